"""Whose fault a refusal is: the codes the served models answer with, and the exception the
client raises for each (tests/functional check them on the wire)."""

from __future__ import annotations

import sys
import types

import pytest

from hpi_triton.client import server_error
from hpi_triton.errors import InvalidRequestError, ServerFaultError, ServiceUnavailableError
from hpi_triton.python_backend import MODULE_DIR


class _Refusal(Exception):
    """tritonclient's InferenceServerException: status() and message()."""

    def __init__(self, status, message):
        super().__init__(message)
        self._status, self._message = status, message

    def status(self):
        return self._status

    def message(self):
        return self._message


@pytest.mark.parametrize("status, message, kind", [
    ("400", "ImageError: the 0 bytes ...", InvalidRequestError),
    ("StatusCode.INVALID_ARGUMENT", "ParameterError: unknown OCR parameter", InvalidRequestError),
    ("503", "license missing: ...", ServiceUnavailableError),
    ("StatusCode.UNAVAILABLE", "EngineUnavailable: model 'x' is recovering",
     ServiceUnavailableError),
    ("404", "Request for unknown model: 'OCR' has no available versions",
     ServiceUnavailableError),
    ("404", "Request for unknown model: 'OCRR' is not found", InvalidRequestError),
    ("500", "Stub process 'OCR_0_1' is not healthy.", ServiceUnavailableError),
    ("500", "RuntimeError: model 'det': boom", ServerFaultError),
    ("StatusCode.INTERNAL", "boom", ServerFaultError),
    (None, "connection refused", ServerFaultError),
])
def test_client_error_kinds(status, message, kind):
    error = server_error("pipeline 'OCR'", _Refusal(status, message))
    assert type(error) is kind
    assert message in str(error) and "pipeline 'OCR'" in str(error)


@pytest.fixture
def bls(monkeypatch):
    """bls.py imported as the stub imports it, beside a stand-in triton_python_backend_utils."""
    stand_in = types.ModuleType("triton_python_backend_utils")

    class TritonError:
        UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE = range(5)

        def __init__(self, message, code=0):
            self.message, self.code = message, code

    stand_in.TritonError = TritonError
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stand_in)
    monkeypatch.syspath_prepend(str(MODULE_DIR))
    for name in ("bls", "image_io", "request_params", "stub_runtime"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    import bls as module

    return module, TritonError


def test_served_error_codes(bls):
    module, codes = bls
    import image_io
    import request_params
    import vision_ops

    assert module.error_code(image_io.ImageError("x")) == codes.INVALID_ARG
    assert module.error_code(request_params.ParameterError("x")) == codes.INVALID_ARG
    assert module.error_code(vision_ops.PreprocessError("smaller than the crop")) == \
        codes.INVALID_ARG
    assert module.error_code(module.LicenseRefused("x")) == codes.UNAVAILABLE
    assert module.error_code(module.EngineUnavailable("x")) == codes.UNAVAILABLE
    assert module.error_code(RuntimeError("x")) == codes.INTERNAL
    assert module.error_code(ValueError("a bug")) == codes.INTERNAL


def test_the_numpy1_marker_is_one_name():
    from hpi_triton.python_backend import stub_runtime
    from hpi_triton.server import NUMPY1_STUB_MARKER

    assert stub_runtime.NUMPY1_STUB_MARKER == NUMPY1_STUB_MARKER
