"""The build's progress bar: shows the steps, and gives logging back afterwards."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from hpi_triton.generator.build import BuildProgress
from hpi_triton.progress import RichBuildProgress


def test_progress_shows_steps_and_restores_logging():
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    before = list(root.handlers)
    progress = RichBuildProgress(Console(file=stream, force_terminal=True, width=120))
    progress.start(["det", "rec"])
    with progress.step("det", "openvino: convert + verify"):
        logging.getLogger("hpi_triton.build").warning("openvino failed; trying the next")
    progress.model_done("det", "onnx_runtime")
    progress.finish()
    try:
        text = stream.getvalue()
        assert "det: openvino: convert + verify" in text
        assert "openvino failed; trying the next" in text  # printed through the console
        assert root.handlers == before
    finally:
        root.removeHandler(handler)


def test_the_default_progress_is_silent():
    progress = BuildProgress()
    progress.start(["m"])
    with progress.step("m", "x"):
        pass
    progress.model_done("m", "openvino")
    progress.finish()
