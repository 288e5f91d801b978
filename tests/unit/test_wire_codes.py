"""Whose fault a refusal is: the codes the served models answer with, and the exception the
client raises for each (tests/functional check them on the wire)."""

from __future__ import annotations

import pytest

from hpi_triton.client import server_error
from hpi_triton.errors import InvalidRequestError, ServerFaultError, ServiceUnavailableError
from hpi_triton.python_backend import EntryPoint, ship
from tests.support.stub import stub_imports


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
def shipped(tmp_path):
    """The runtime package shipped into a version folder, imported as the stub imports it."""
    ship(tmp_path / "m" / "1", EntryPoint.OCR)
    with stub_imports(tmp_path / "m") as import_version:
        yield lambda name: import_version(f"1.python_backend.{name}")


def test_served_error_codes(shipped):
    module = shipped("common.bls")
    image_io, parameters = shipped("common.image_io"), shipped("common.parameters")
    vision_ops = shipped("vision.vision_ops")
    codes = shipped("common.bls").pb_utils.TritonError

    assert module.error_code(image_io.ImageError("x")) == codes.INVALID_ARG
    assert module.error_code(parameters.ParameterError("x")) == codes.INVALID_ARG
    assert module.error_code(vision_ops.PreprocessError("smaller than the crop")) == \
        codes.INVALID_ARG
    assert module.error_code(module.LicenseRefused("x")) == codes.UNAVAILABLE
    assert module.error_code(module.EngineUnavailable("x")) == codes.UNAVAILABLE
    assert module.error_code(RuntimeError("x")) == codes.INTERNAL
    assert module.error_code(ValueError("a bug")) == codes.INTERNAL


def test_the_numpy1_marker_is_one_name():
    from hpi_triton.python_backend.common import stub_runtime
    from hpi_triton.server import NUMPY1_STUB_MARKER

    assert stub_runtime.NUMPY1_STUB_MARKER == NUMPY1_STUB_MARKER


def test_server_faults_are_logged_with_their_traceback_client_faults_are_not(shipped):
    bls = shipped("common.bls")
    parameters = shipped("common.parameters")
    logger = bls.pb_utils.Logger
    logger.messages.clear()

    def handle(request):
        if request == "bad":
            raise parameters.ParameterError("parameter 'thresh' must be a number in [0, 1]")
        if request == "engine":
            raise bls.EngineUnavailable("OCR_TextDetection is not ready")
        raise KeyError("det_normalize")

    responses = bls.serve_each(["bad", "engine", "bug"], handle)
    codes = bls.pb_utils.TritonError
    assert [r.error.code for r in responses] == [codes.INVALID_ARG, codes.UNAVAILABLE,
                                                 codes.INTERNAL]
    levels = [level for level, _ in logger.messages]
    assert levels == ["warn", "error"]
    assert "Traceback" in logger.messages[1][1] and "det_normalize" in logger.messages[1][1]
