"""In-process peers that cannot share hpi-triton's venv: RapidOCR 3.10 (numpy 2, OpenCV 5) in a
venv of its own, run by bench/rapidocr3_worker.py on the models bench/ocr.py gives RapidOCR
1.4.4 (PP-OCRv4 mobile det/rec + mobile v2 line classifier, the ONNX files of the
rapidocr_onnxruntime 1.4.4 wheel).

Variants: ``openvino`` (RapidOCR's OpenVINO defaults: bf16 on CPUs with bf16 units),
``openvino-fp32`` (the same with OpenVINO's INFERENCE_PRECISION_HINT forced to f32) and
``onnxruntime``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2

from bench.load import percentiles
from hpi_triton.pages import make_pages, scores

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "bench" / "rapidocr3_worker.py"

#: RapidOCR 3.10's venv; openvino and onnxruntime pinned to the versions hpi-triton's own venv
#: has (both install beside numpy 2).
RAPIDOCR3_REQUIREMENTS = ("rapidocr==3.10.0", "openvino==2026.4.1", "onnxruntime==1.32.0")
VARIANTS = ("openvino", "openvino-fp32", "onnxruntime")
MODEL_FILES = {"det": "ch_PP-OCRv4_det_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx",
               "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx"}
MODELS_WHEEL = "rapidocr_onnxruntime==1.4.4"


class PeerError(RuntimeError):
    """A peer could not be set up or run."""


def default_cache_dir() -> Path:
    found = os.environ.get("HPI_TRITON_TEST_CACHE")
    return Path(found) if found else Path.home() / ".cache" / "hpi-triton-bench"


def rapidocr3_python(cache_dir=None) -> str:
    """The python of ``<cache>/rapidocr-3.10-venv`` (made once; a ``.ready`` stamp holds the
    requirements it was made with)."""
    venv = Path(cache_dir or default_cache_dir()) / "rapidocr-3.10-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".ready"
    wanted = " ".join(RAPIDOCR3_REQUIREMENTS)
    if stamp.is_file() and stamp.read_text() == wanted and python.exists():
        return str(python)
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = ([sys.executable, "-m", "venv", "--clear", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
              *RAPIDOCR3_REQUIREMENTS])
    for step in steps:
        try:
            proc = subprocess.run(step, capture_output=True, text=True, timeout=1200)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerError(f"making the RapidOCR 3.10 venv at {venv} failed: {exc}") from exc
        if proc.returncode != 0:
            raise PeerError(f"making the RapidOCR 3.10 venv at {venv} failed "
                            f"({' '.join(step[:4])} ...; is PyPI reachable?):\n"
                            f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    stamp.write_text(wanted)
    return str(python)


def model_paths(cache_dir=None) -> dict:
    """{det, rec, cls: .onnx path}: rapidocr_onnxruntime 1.4.4's files, from the installed
    package where there is one (what bench/ocr.py's RapidOCR 1.4.4 runs), else out of its
    wheel (pip download, cached by hpi_triton.wheel_models)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec and spec.origin:
        models = Path(spec.origin).parent / "models"
        if all((models / f).is_file() for f in MODEL_FILES.values()):
            return {k: str(models / f) for k, f in MODEL_FILES.items()}
    from hpi_triton.wheel_models import fetch_wheel

    target = Path(cache_dir or default_cache_dir()) / "rapidocr_onnxruntime-1.4.4-models"
    if not all((target / f).is_file() for f in MODEL_FILES.values()):
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(fetch_wheel(MODELS_WHEEL)) as wheel:
            for name in MODEL_FILES.values():
                partial = target / f".{name}.part"
                partial.write_bytes(wheel.read(f"rapidocr_onnxruntime/models/{name}"))
                os.replace(partial, target / name)
    return {k: str(target / f) for k, f in MODEL_FILES.items()}


def write_pages(pages, folder: Path, prefix: str = ""):
    """``pages`` as PNG files in ``folder`` for a reader in another process, and a warm-up
    page it reads first: (page paths, warm-up path)."""
    paths = []
    for i, page in enumerate(pages):
        paths.append(str(folder / f"{prefix}page_{i:03d}.png"))
        cv2.imwrite(paths[-1], page.image)
    warmup = str(folder / f"{prefix}warmup.png")
    cv2.imwrite(warmup, make_pages(1, seed=99)[0].image)
    return paths, warmup


def rapidocr3_job(python, pages, variant, tmp, passes=2) -> dict:
    """The worker's whole answer (versions, precision per stage, per-pass texts and times)."""
    if variant not in VARIANTS:
        raise PeerError(f"unknown RapidOCR 3 variant {variant!r}; known: {', '.join(VARIANTS)}")
    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    paths, warmup = write_pages(pages, tmp, "rapidocr3_")
    job = dict(model_paths(), variant=variant, pages=paths, warmup=warmup, passes=passes)
    job_path = tmp / f"rapidocr3_{variant}.json"
    job_path.write_text(json.dumps(job))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([str(python), str(WORKER), str(job_path)], capture_output=True,
                          text=True, env=env, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise PeerError(f"RapidOCR 3 ({variant}) failed with exit {proc.returncode}:\n"
                        f"{proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def run_rapidocr3(python, pages, variant, tmp, passes=2, answer=None):
    """Passes of RapidOCR 3.10 (``variant``) over ``pages``, the same shape as bench/ocr.py's
    run_rapidocr: [(img/s, p50 ms, p95 ms, scores(predictions, pages))] each. ``answer``, a
    dict, receives the worker's versions and per-stage precision."""
    result = rapidocr3_job(python, pages, variant, tmp, passes)
    if answer is not None:
        answer.update({k: v for k, v in result.items() if k != "passes"})
    return [(len(pages) / run["wall"], *percentiles([s * 1e3 for s in run["seconds"]]),
             scores(run["texts"], pages)) for run in result["passes"]]


def precision_label(answer) -> str:
    """``bf16`` / ``f32`` / ``det=bf16, rec=f32, ...`` from the worker's precision report."""
    found = answer.get("precision", {})
    if not found:
        return ""
    if len(set(found.values())) == 1:
        return next(iter(found.values()))
    return ", ".join(f"{s}={p}" for s, p in found.items())


def rapidocr3_label(variant, answer) -> str:
    """Row label, e.g. ``RapidOCR 3.10 OpenVINO defaults (bf16)``."""
    if variant == "onnxruntime":
        return f"RapidOCR {answer.get('rapidocr', '3.10')} ONNX Runtime"
    what = "defaults" if variant == "openvino" else "forced f32"
    precision = precision_label(answer)
    return (f"RapidOCR {answer.get('rapidocr', '3.10')} OpenVINO {answer.get('openvino', '')}"
            .rstrip() + f" {what}" + (f" ({precision})" if precision else ""))

