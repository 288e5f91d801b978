"""Importing shipped models as tritonserver's Python-backend stub does, without the server."""

from __future__ import annotations

import importlib
import sys
import types
from contextlib import contextmanager
from pathlib import Path


def stand_in_pb_utils() -> types.ModuleType:
    """A ``triton_python_backend_utils`` with what served code touches at import time and in
    error handling (TritonError and its codes); the real one exists only inside the stub."""
    module = types.ModuleType("triton_python_backend_utils")

    class TritonError(Exception):
        UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED = range(6)

        def __init__(self, message, code=0):
            super().__init__(message)
            self.message, self.code = message, code

    class Logger:
        """Records what served code logs (``Logger.messages``: (level, message))."""

        messages: list = []

    for level in ("info", "warn", "error", "verbose"):
        setattr(Logger, f"log_{level}", classmethod(
            lambda cls, message, level=level: cls.messages.append((level, message))))

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error = list(output_tensors), error

    module.TritonError = TritonError
    module.Logger = Logger
    module.InferenceResponse = InferenceResponse
    return module


@contextmanager
def stub_imports(model_dir: Path):
    """Within: ``import_version(name)`` imports ``<version>.<name>`` from ``model_dir`` as the
    stub does (the model folder on sys.path, the version folder a namespace package)."""
    saved_path = list(sys.path)
    versions = {p.name for p in Path(model_dir).iterdir() if p.is_dir()}

    def ours(name: str) -> bool:  # the version packages ("1", "1.model", ...) and pb_utils
        return name.split(".")[0] in versions or name == "triton_python_backend_utils"

    drop = [name for name in sys.modules if ours(name)]
    for name in drop:
        del sys.modules[name]
    sys.modules["triton_python_backend_utils"] = stand_in_pb_utils()
    sys.path.insert(0, str(model_dir))
    importlib.invalidate_caches()
    try:
        yield lambda name: importlib.import_module(name)
    finally:
        sys.path[:] = saved_path
        for name in [n for n in sys.modules if ours(n)]:
            del sys.modules[name]
