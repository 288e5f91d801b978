"""RapidOCR 3.x, one page at a time, timed: run in RapidOCR 3's own venv (numpy 2), never in
hpi-triton's. bench/peers.py makes that venv and calls this script; it imports nothing of
hpi_triton.

    <venv>/bin/python bench/rapidocr3_worker.py [JOB.json]     (else the job on stdin)

The job (JSON): ``{"det": .onnx, "rec": .onnx, "cls": .onnx, "variant": "openvino" |
"openvino-fp32" | "onnxruntime", "pages": [png, ...], "warmup": png, "passes": 2}``.
Prints one JSON object on stdout: ``{"rapidocr", "openvino", "onnxruntime", "variant",
"precision": {stage: the compiled model's INFERENCE_PRECISION_HINT: bf16, f32...},
"passes": [{"wall": s, "seconds": [s per page], "texts": [[line, ...] per page]}]}``.

Engines: every stage (det, cls, rec) on the variant's engine. ``openvino`` is RapidOCR's own
OpenVINO setup (its CPU defaults: bf16 where the CPU has bf16 units); ``openvino-fp32`` adds
``INFERENCE_PRECISION_HINT=f32`` to the CPU properties RapidOCR sets on its ``ov.Core``
before it compiles each model: RapidOCR 3.10 has no precision option (its
``inference_engine/openvino/device_config.py`` CPUConfig passes on a fixed set of keys), so
the job's ``EngineConfig.openvino.inference_precision_hint`` is passed through by wrapping
``CPUConfig.get_config``. The recognizer's characters come from the ONNX file's ``character``
metadata (RapidOCR 3 reads it on both engines: OpenVINO exposes it as rt_info
``framework.character``), so no ``Rec.rec_keys_path`` and nothing is downloaded.
"""

from __future__ import annotations

import json
import sys
import time


def precision_patch():
    """Let ``EngineConfig.openvino.inference_precision_hint`` reach the OpenVINO CPU plugin."""
    from rapidocr.inference_engine.openvino import device_config

    base = device_config.CPUConfig.get_config
    if getattr(base, "_hint_patch", False):
        return

    def get_config(self):
        config = base(self)
        hint = self.cfg.get("inference_precision_hint", None)
        if hint:
            config["INFERENCE_PRECISION_HINT"] = str(hint)
        return config

    get_config._hint_patch = True
    device_config.CPUConfig.get_config = get_config


def make_engine(job):
    from rapidocr import EngineType, OCRVersion, RapidOCR

    variant = job["variant"]
    engine = EngineType.ONNXRUNTIME if variant == "onnxruntime" else EngineType.OPENVINO
    params = {"Global.use_cls": True, "Global.log_level": "warning"}
    for section, key in (("Det", "det"), ("Cls", "cls"), ("Rec", "rec")):
        params[f"{section}.engine_type"] = engine
        params[f"{section}.model_path"] = job[key]
        # Only the classifier's input shape and the (unused) download routes depend on it.
        params[f"{section}.ocr_version"] = OCRVersion.PPOCRV4
    if variant == "openvino-fp32":
        precision_patch()
        params["EngineConfig.openvino.inference_precision_hint"] = "f32"
    elif variant not in ("openvino", "onnxruntime"):
        raise SystemExit(f"unknown variant {variant!r}")
    return RapidOCR(params=params)


def precisions(ocr):
    """INFERENCE_PRECISION_HINT of each stage's compiled OpenVINO model (after a first call,
    when RapidOCR has loaded them); {} on ONNX Runtime."""
    found = {}
    for stage, holder in (("det", ocr.text_det), ("cls", ocr.text_cls), ("rec", ocr.text_rec)):
        request = getattr(getattr(holder, "session", None), "session", None)
        if request is not None and hasattr(request, "get_compiled_model"):
            hint = request.get_compiled_model().get_property("INFERENCE_PRECISION_HINT")
            found[stage] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
    return found


def main():
    job = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    stdout, sys.stdout = sys.stdout, sys.stderr  # nothing but the result on stdout

    from importlib.metadata import PackageNotFoundError, version

    import cv2

    ocr = make_engine(job)
    warmup = cv2.imread(job["warmup"])
    ocr(warmup)
    images = [cv2.imread(p) for p in job["pages"]]
    missing = [p for p, image in zip(job["pages"], images) if image is None]
    if missing:
        raise SystemExit(f"cannot read {missing}")
    passes = []
    for _ in range(int(job.get("passes", 2))):
        seconds, texts = [], []
        start = time.perf_counter()
        for image in images:
            t0 = time.perf_counter()
            result = ocr(image)
            seconds.append(time.perf_counter() - t0)
            texts.append(list(result.txts or ()))
        passes.append({"wall": time.perf_counter() - start, "seconds": seconds, "texts": texts})

    def installed(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    result = {"variant": job["variant"], "rapidocr": installed("rapidocr"),
              "openvino": installed("openvino"), "onnxruntime": installed("onnxruntime"),
              "precision": precisions(ocr), "passes": passes}
    stdout.write(json.dumps(result) + "\n")
    stdout.flush()


if __name__ == "__main__":
    main()
