"""``hpi-triton build --quantize int8``: accuracy-gated int8 OCR engines.

Post-training quantization with NNCF of the OCR graphs' OpenVINO text detection and
recognition engines. Calibration data are the engines' own inputs while the fp32 graph reads
calibration images (the user's ``--calibration DIR``, else rendered pages), so their ranges are
the ones served. Each candidate (both engines int8, recognition only, detection only) reads
held-out rendered pages with known text; it is accepted when its CER is at most
``max_cer_delta`` points above the fp32 graph's (PaddleX's batching) and it finds
≥ :data:`MIN_LINE_RECALL` of the fp32 graph's lines. On CPUs with bf16 units (AVX-512 BF16,
AMX: :func:`float_precisions`) each candidate is measured again with its float layers in bf16
(OpenVINO's ``INFERENCE_PRECISION_HINT``), and the fp32 engines in bf16 without int8 are a
candidate too. The fastest accepted candidate (the first in that order within 5% of it) is
written over the fp32 IR (bf16 as the engine models' ``precision``); none accepted leaves the
repository fp32, said in the report. Each candidate's CER with spaces and word F1 are
reported beside the CER the gate bounds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from hpi_triton import pages
from hpi_triton.core.cache import (
    ArtifactCache,
    cache_key,
    device_architecture,
    package_versions,
    update_with_file,
)
from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import BuildReport, RepositoryTransform
from hpi_triton.generator.selection import TIE_TOLERANCE
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.transforms.local_ocr import LocalOCR

log = logging.getLogger("hpi_triton.build")

DEFAULT_MAX_CER_DELTA = 0.1  # CER points (percent) above the fp32 graph's
MIN_LINE_RECALL = 0.98  # share of the fp32 graph's lines a candidate must find (IoU >= 0.5)
QUANTIZABLE = ("TextDetection", "TextRecognition")
CANDIDATES = (("TextDetection", "TextRecognition"), ("TextRecognition",), ("TextDetection",))
# Calibration images read (spread over a larger folder) and inputs kept per engine: NNCF uses
# at most 300 samples, and a 4000 px page's detection input alone is ~150 MB of float32.
MAX_CALIBRATION_IMAGES, MAX_SAMPLES = 32, 300
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CALIBRATION_SEED, HELD_OUT_SEED = 7001, 7002  # rendered sets, distinct from tests' and bench's


class QuantizeTransform(RepositoryTransform):
    """Quantize the OCR engines of every OCR-reading pipeline, keeping what passes the gate.

    Args:
        calibration: A folder of the user's page images for calibration (else rendered pages).
        max_cer_delta: The largest CER increase, in points, a candidate may have.
        calibration_pages: Rendered calibration pages when ``calibration`` is not given.
        held_out_pages: Rendered pages the gate reads.
    """

    name = "quantize"

    def __init__(self, calibration: Optional[Path] = None,
                 max_cer_delta: float = DEFAULT_MAX_CER_DELTA, calibration_pages: int = 16,
                 held_out_pages: int = 16):
        self.calibration = Path(calibration).expanduser() if calibration else None
        self.max_cer_delta = max_cer_delta
        self.calibration_pages = calibration_pages
        self.held_out_pages = held_out_pages
        self.cache_dir: Optional[Path] = None  # the build's, set by check()
        self.use_cache = True

    def check(self, plain_models, pipelines, options) -> None:
        """Refuse a build the int8 gate cannot run on, before any conversion.

        Raises:
            BuildError: naming the option or package to change.
        """
        try:
            import nncf  # noqa: F401
        except ImportError as exc:
            raise BuildError("--quantize int8 needs NNCF (OpenVINO's quantization tool): "
                             "pip install 'nncf>=2.12'") from exc
        if not any(p.reads_general_text for p in pipelines):
            from hpi_triton.ensembles.registry import kinds

            readers = ", ".join(name for name, kind in kinds().items() if kind.fast)
            raise BuildError(f"--quantize int8 / --fast apply to OCR text detection and "
                             f"recognition: build one of {readers} with TextDetection and "
                             f"TextRecognition (seal text stays fp32)")
        if options.precision != "fp32" or options.device.kind != "cpu":
            raise BuildError(f"--quantize int8 quantizes fp32 CPU engines; got --precision "
                             f"{options.precision} --device {options.device}: use "
                             f"--precision fp32 --device cpu")
        if options.hosting == "native":
            raise BuildError("--quantize int8 needs --hosting auto, graph or python (the int8 "
                             "IR runs on the Python-backend OpenVINO engine, not Triton's "
                             "native backend)")
        if not any(pages.font_path(f) for f in pages.LATIN_FONTS):
            raise BuildError("--quantize int8 renders held-out pages with known text to gate "
                             "accuracy and found no DejaVu fonts: install fonts-dejavu-core")
        if self.calibration is not None:
            calibration_images(self.calibration)  # refuses a missing or empty folder now
        if self.max_cer_delta < 0:
            raise BuildError(f"--max-cer-delta {self.max_cer_delta}: expected CER points >= 0")
        self.cache_dir, self.use_cache = options.cache_dir, options.use_cache

    def prepare(self, requests, pipelines) -> None:
        """Detection and recognition of the pipelines the gate reads go on OpenVINO, the
        engine int8 runs on, unless ``--backend`` names another: a measurement could pick
        Paddle Inference on a near tie, leaving nothing to quantize."""
        names = {p.model_name(role) for p in pipelines if p.reads_general_text
                 for role in QUANTIZABLE}
        for request in requests:
            if request.name in names and not request.backends:
                request.preferred = ("openvino", "--quantize int8 / --fast: int8 runs on "
                                     "OpenVINO")

    def apply(self, staging: Path, report) -> List[Dict]:
        """Quantize and gate each OCR-reading graph in ``staging``; one record per graph."""
        done, quantized = [], set()
        for entry in report.pipelines:
            ocr = LocalOCR.from_build(staging, entry, report)
            if ocr is None:
                continue
            if ocr.settings.text_type == "seal":
                done.append({"pipeline": ocr.served_name, "chosen": [],
                             "note": "seal text stays fp32 (the gate renders horizontal text)"})
                continue
            if any(ocr.models[r] in quantized for r in QUANTIZABLE):
                continue  # engine models shared with a graph already gated
            record = quantize_ocr(ocr, self, report, exclude=ocr.seal_models)
            quantized.update(ocr.models[r] for r in record["chosen"])
            done.append(record)
        return done


def calibration_images(folder: Path) -> List[Path]:
    """The image files in ``folder``, sorted.

    Raises:
        BuildError: ``folder`` is missing or holds no image.
    """
    if not folder.is_dir():
        raise BuildError(f"--calibration {folder}: not a folder; give a folder of page images "
                         f"like the ones the repository will serve")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise BuildError(f"--calibration {folder}: no images ({', '.join(IMAGE_SUFFIXES)}); "
                         f"give a folder of page images like the ones the repository will serve")
    return found


def _spread(paths: Sequence[Path], count: int) -> List[Path]:
    """At most ``count`` of ``paths``, evenly spread (all of them when fewer)."""
    if len(paths) <= count:
        return list(paths)
    return [paths[int(i * len(paths) / count)] for i in range(count)]


def _read_images(paths: Sequence[Path]) -> List[np.ndarray]:
    import cv2

    images = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise BuildError(f"--calibration: {path} is not a readable image; remove it or "
                             f"replace it with a PNG/JPEG page")
        images.append(image)
    return images


def quantize_ocr(ocr: LocalOCR, options: QuantizeTransform, report: BuildReport,
                 exclude: Sequence[str] = ()) -> Dict:
    """Quantize, gate and (when a candidate passes) write one graph's OCR engines (their
    configs edited as the build ``report`` holds them).

    The outcome is cached (:class:`ArtifactCache`) under the fp32 artifacts, the graph's
    settings, the calibration images, the gate's settings, the library versions and this CPU:
    a rebuild reuses the int8 IR and the gate's table instead of measuring again.
    """
    record: Dict = {"pipeline": ocr.served_name, "max_cer_delta": options.max_cer_delta,
                    "min_line_recall": MIN_LINE_RECALL, "candidates": [], "chosen": []}
    notes = []
    shared = [r for r in QUANTIZABLE if ocr.models[r] in exclude]
    if shared:
        notes.append(f"{', '.join(shared)} also reads seal text (not gated): stays fp32")
    engine = {r: ocr.engine_params(r).get("engine", "?") for r in QUANTIZABLE}
    other = [r for r in QUANTIZABLE if r not in shared and engine[r] != "openvino"]
    if other:
        notes.append(f"{', '.join(other)} not on OpenVINO "
                     f"({', '.join(engine[r] for r in other)}): stays fp32")
    roles = [r for r in QUANTIZABLE if r not in shared and r not in other]
    if notes:
        record["note"] = "; ".join(notes)
    if not roles:
        log.warning("%s: nothing to quantize (%s)", ocr.served_name, record["note"])
        return record
    found = calibration_images(options.calibration) if options.calibration else []
    paths = _spread(found, MAX_CALIBRATION_IMAGES)
    key = cache_key(
        kind="ocr-int8", engines={r: _digest(ocr.engine_dir(r)) for r in ocr.models},
        settings={k: v for k, v in ocr.settings.to_json().items() if k != "models"}, roles=roles,
        calibration=[_digest_file(p) for p in paths] or options.calibration_pages,
        held_out=options.held_out_pages, bound=[options.max_cer_delta, MIN_LINE_RECALL],
        seeds=[CALIBRATION_SEED, HELD_OUT_SEED], cpu=device_architecture("cpu"),
        code=_code_digest(), fonts=[str(f) for f in pages.installed_fonts()],
        versions=package_versions(["nncf", "openvino", "numpy", "opencv-python-headless",
                                   "Pillow"]))
    cache = ArtifactCache(options.cache_dir, enabled=options.use_cache)
    entry = cache.get_or_create(key, lambda folder: _gate(ocr, options, roles, paths, record,
                                                          folder))
    record = dict(entry.meta, cache="hit" if entry.hit else "miss", pipeline=ocr.served_name)
    if paths:  # the folder's name is not part of the key: say this build's
        record["calibration"] = f"{len(paths)} of {len(found)} images from {options.calibration}"
    precision = record.get("precision", "fp32")
    if not record["chosen"] and precision == "fp32":
        log.warning("%s: no int8 candidate within %.2f CER points of fp32; engines stay fp32 "
                    "(build report: quantize)%s", ocr.served_name, options.max_cer_delta,
                    "" if mode_of(ocr) == "paddlex" else
                    f"; text_rec_batching={mode_of(ocr)} still applies (its fp32 row there)")
        return record
    # The build's configs, edited here and each written once.
    changed = {role: report.model_config(ocr.models[role])
               for role in (roles if precision != "fp32" else record["chosen"])}
    for role in record["chosen"]:
        _install(ocr, role, entry.directory)
        changed[role].parameters["quantization"] = "int8"
    if precision != "fp32":
        for config in changed.values():
            # Its Python-backend OpenVINO model reads ``precision`` as its inference
            # precision hint.
            config.parameters["precision"] = precision
    for role, config in changed.items():
        config.write(ocr.repo / ocr.models[role])
    best = next(c for c in record["candidates"] if c["accepted"]
                and c["int8"] == record["chosen"] and c.get("precision", "fp32") == precision)
    record["kept"] = describe(best)
    log.info("%s: %s kept (CER %+.2f points, word F1 %+.3f, %.2f img/s against fp32's %.2f "
             "in process%s)", ocr.served_name, record["kept"], best["cer_delta"],
             best["word_f1_delta"], best["img_s"], record["fp32"]["img_s"],
             "; cached" if entry.hit else "")
    return record


def _gate(ocr: LocalOCR, options: QuantizeTransform, roles, paths, record, folder: Path) -> Dict:
    """Calibrate, quantize and measure every candidate; save the kept one's IR in
    ``folder``; the record (for the cache's metadata and the report)."""
    import openvino as ov

    if paths:  # quantize_ocr says which folder
        images = _read_images(paths)
    else:
        images = [p.image for p in pages.make_realistic_pages(options.calibration_pages,
                                                              CALIBRATION_SEED)]
        record["calibration"] = f"{len(images)} rendered pages"
    held_out = pages.make_realistic_pages(options.held_out_pages, HELD_OUT_SEED)
    record["held_out"] = f"{len(held_out)} rendered pages with known text"
    fp32 = {role: ocr.runner(role) for role in ocr.models}
    samples = _calibration_samples(ocr, fp32, images, roles)
    core = ov.Core()
    int8 = {role: _quantize(core, ocr, role, samples[role]) for role in roles}
    mode = mode_of(ocr)
    reference, ref_ips = _read(ocr.flow(fp32), held_out, "paddlex")
    record["fp32"] = {**pages.scores(_texts(reference), held_out),
                      "img_s": round(ref_ips, 2), "text_rec_batching": "paddlex"}
    record["precisions"] = float_precisions()
    for precision in record["precisions"]:
        floats = fp32 if precision == "fp32" else dict(
            fp32, **{r: ocr.runner(r, precision=precision) for r in roles})
        # fp32 in the graph's own batching, when it is not PaddleX's: measured, never kept;
        # bf16 without int8 is a candidate of its own.
        plain = [()] if mode != "paddlex" or precision != "fp32" else []
        for combo in plain + list(CANDIDATES):
            if not set(combo) <= set(roles):
                continue
            engines = dict(floats, **{r: _compiled(core, int8[r], precision) for r in combo})
            results, ips = _read(ocr.flow(engines), held_out, mode)
            measured = accuracy(reference, results, held_out)
            changed = bool(combo) or precision != "fp32"
            accepted = changed and (measured["cer_delta"] <= options.max_cer_delta
                                    and measured["line_recall"] >= MIN_LINE_RECALL)
            record["candidates"].append({"int8": list(combo), "precision": precision,
                                         "text_rec_batching": mode, "img_s": round(ips, 2),
                                         "accepted": accepted, **measured})
    kept = [c for c in record["candidates"] if c["accepted"]]
    record["precision"] = "fp32"
    if kept:
        best = steadiest_fastest(kept)
        record["chosen"], record["precision"] = list(best["int8"]), best["precision"]
        for role in record["chosen"]:
            ov.save_model(int8[role], str(folder / f"{role}.xml"), compress_to_fp16=False)
    return record


def steadiest_fastest(kept: List[Dict]) -> Dict:
    """The first of ``kept`` (in the gate's order: fp32 before bf16, more int8 first) whose
    img/s is within :data:`~hpi_triton.generator.selection.TIE_TOLERANCE` of the fastest:
    the top candidates differ by less than the runs' noise, and a rebuild should not flip."""
    fastest = max(c["img_s"] for c in kept)
    return next(c for c in kept if c["img_s"] >= fastest * (1 - TIE_TOLERANCE))


def float_precisions() -> List[str]:
    """The float precisions the gate measures on this CPU: fp32, and bf16 where the CPU has
    bf16 units (AVX-512 BF16 or AMX), on which OpenVINO runs bf16 at full speed (elsewhere it
    would emulate it, slower than fp32)."""
    flags = device_architecture("cpu")
    return ["fp32", "bf16"] if ("avx512_bf16" in flags or "amx_bf16" in flags) else ["fp32"]


def describe(candidate: Dict) -> str:
    """``int8 TextDetection + TextRecognition, bf16`` — what a gate candidate changes."""
    parts = ([f"int8 {' + '.join(candidate['int8'])}"] if candidate["int8"] else []) + (
        [candidate.get("precision", "fp32")] if candidate.get("precision", "fp32") != "fp32"
        else [])
    return ", ".join(parts) or "fp32"


def mode_of(ocr: LocalOCR) -> str:
    """The graph's recognition batching (PaddleX's unless --fast / --param set another)."""
    return ocr.settings.params.get("text_rec_batching", "paddlex")


def _code_digest() -> str:
    """The code the gate's outcome depends on: the OCR flow, the pages, this module."""
    from hpi_triton.python_backend import doc_preprocessor, documents, ocr

    files = [path for package in (ocr, documents, doc_preprocessor)
             for path in sorted(Path(package.__file__).parent.glob("*.py"))]
    files += [Path(pages.__file__), Path(__file__)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _digest_file(path: Path) -> str:
    return update_with_file(hashlib.sha256(), path).hexdigest()


def _digest(version: Path) -> Dict[str, str]:
    """Digests of an engine model version's artifact files (not its runtime code)."""
    return {p.name: _digest_file(p) for p in sorted(version.iterdir())
            if p.is_file() and p.suffix != ".py"}


def _calibration_samples(ocr: LocalOCR, fp32, images, roles) -> Dict[str, List[np.ndarray]]:
    """The inputs ``roles``' engines receive while the fp32 graph reads ``images``."""
    samples: Dict[str, List[np.ndarray]] = {role: [] for role in roles}

    def recorder(role):
        def call(batch):
            if len(samples[role]) < MAX_SAMPLES:
                samples[role].append(np.array(batch, np.float32))
            return fp32[role].run(batch)
        return FunctionEngine(call)

    flow = ocr.flow(dict(fp32, **{role: recorder(role) for role in roles}))
    for image in images:
        flow.run(image)
    empty = [role for role in roles if not samples[role]]
    if empty:
        raise BuildError(f"--quantize int8: the calibration images gave {', '.join(empty)} "
                         f"no input (no text detected); give pages with text (--calibration)")
    return samples


def _quantize(core, ocr: LocalOCR, role: str, samples: List[np.ndarray]):
    import nncf

    model = core.read_model(str(ocr.engine_dir(role) / "model.xml"))
    options = {"subset_size": min(len(samples), MAX_SAMPLES)}
    if role == "TextRecognition":
        # SVTR-style recognizers: keep softmax / layer-norm paths in float (NNCF's preset).
        options["model_type"] = nncf.ModelType.TRANSFORMER
    nncf.set_log_level(logging.WARNING)
    # NNCF draws progress bars on stdout; the build has its own progress and output.
    with contextlib.redirect_stdout(io.StringIO()):
        return nncf.quantize(model, nncf.Dataset(samples), **options)


def _compiled(core, model, precision: str = "fp32"):
    hint = {"fp32": "f32", "bf16": "bf16"}[precision]  # an int8 model's float layers
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                 "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return FunctionEngine(lambda batch: [request.infer({0: batch})[0].copy()])


def _read(flow, held_out, mode: str):
    flow.run(held_out[0].image, {"text_rec_batching": mode})  # warm-up
    started = time.perf_counter()
    results = [flow.run(p.image, {"text_rec_batching": mode}) for p in held_out]
    return results, len(held_out) / (time.perf_counter() - started)


def _texts(results) -> List[List[str]]:
    return [list(r["rec_texts"]) for r in results]


def _box(poly) -> np.ndarray:
    points = np.asarray(poly, np.float64).reshape(-1, 2)
    return np.concatenate([points.min(0), points.max(0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def accuracy(reference: List[Dict], results: List[Dict], held_out) -> Dict:
    """A candidate's reading of ``held_out`` against the fp32 graph's ``reference``.

    Returns:
        ``cer`` and ``cer_delta`` (points, against the pages' text and the fp32 CER; the
        gate's measure), ``cer_spaces`` (points, spaces kept: merged words count) and
        ``word_f1`` with ``word_f1_delta`` (against fp32's) — reported beside the CER, as
        users read text —, ``cer_vs_fp32`` (points, the fp32 texts as truth),
        ``line_recall`` (share of fp32 lines with a candidate box of IoU >= 0.5),
        ``box_delta_px`` (mean and max corner shift of matched boxes).
    """
    ref_cer = pages.cer(_texts(reference), held_out)
    cand_cer = pages.cer(_texts(results), held_out)
    ref_words = pages.word_f1(_texts(reference), held_out)
    cand = pages.scores(_texts(results), held_out)
    edits = total = matched = lines = 0
    shifts: List[float] = []
    for ref, res in zip(reference, results):
        e, n = pages.page_cer(res["rec_texts"], ref["rec_texts"])
        edits, total = edits + e, total + n
        boxes = [_box(p) for p in res["dt_polys"]]
        for poly in ref["dt_polys"]:
            lines += 1
            box = _box(poly)
            scores = [_iou(box, b) for b in boxes]
            if scores and max(scores) >= 0.5:
                matched += 1
                shifts.append(float(np.abs(boxes[int(np.argmax(scores))] - box).max()))
    return {"cer": round(cand_cer * 100, 3), "cer_delta": round((cand_cer - ref_cer) * 100, 3),
            "cer_spaces": cand["cer_spaces"], "word_f1": cand["word_f1"],
            "word_f1_delta": round(cand["word_f1"] - ref_words, 4),
            "cer_vs_fp32": round(edits / max(total, 1) * 100, 3),
            "line_recall": round(matched / max(lines, 1), 4),
            "box_delta_px": {"mean": round(float(np.mean(shifts)), 2) if shifts else 0.0,
                             "max": round(max(shifts), 2) if shifts else 0.0}}


def _install(ocr: LocalOCR, role: str, folder: Path) -> None:
    """Put the cached int8 IR of ``role`` in place of its fp32 IR."""
    version = ocr.repo / ocr.models[role] / "1"
    # Copied beside and renamed over: the fp32 engines loaded here still map the old
    # model.bin, and writing into a mapped file kills this process (SIGBUS); the fp32 files
    # are also hard links into the artifact cache, which an in-place write would corrupt.
    for suffix in (".bin", ".xml"):
        staged = version / f"int8{suffix}"
        shutil.copyfile(folder / f"{role}{suffix}", staged)
        os.replace(staged, version / f"model{suffix}")
