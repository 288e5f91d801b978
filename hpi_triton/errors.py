"""Exceptions raised by hpi-triton.

Every error the tool raises derives from :class:`HpiTritonError`, so callers can catch one
type. Subclasses are narrow: each names the thing that is wrong and says what is expected.
"""

from __future__ import annotations


class HpiTritonError(Exception):
    """Base class of every error raised by hpi-triton."""


class ModelDirError(HpiTritonError):
    """A PaddleX model directory is missing files or holds unreadable ones."""


class InferenceConfigError(ModelDirError):
    """A field of ``inference.yml`` has a value hpi-triton cannot use."""


class UnknownBackendError(HpiTritonError):
    """A backend name is not one hpi-triton knows."""


class BackendUnavailableError(HpiTritonError):
    """A known backend cannot run on this machine (package missing, no GPU, ...)."""


class ConversionError(HpiTritonError):
    """Converting a model to a backend's artifact failed."""


class VerificationError(HpiTritonError):
    """A converted artifact does not reproduce the Paddle Inference reference."""


class NoUsableBackendError(HpiTritonError):
    """Every candidate backend for a model failed to convert or to verify."""


class BuildError(HpiTritonError):
    """The repository build was asked for something inconsistent."""


class UnsupportedComparison(HpiTritonError):
    """A built pipeline cannot be rebuilt as a PaddleX config (``hpi-triton compare``)."""


class ModelConfigError(HpiTritonError):
    """A Triton model configuration could not be built or parsed."""


class ServerError(HpiTritonError):
    """tritonserver could not be found, started, or did not become ready."""


class PortInUseError(ServerError):
    """A port tritonserver should listen on is taken."""


class StubEnvironmentError(ServerError):
    """The Python environment the Python-backend stub would embed is known to break it
    (numpy 2, no libpython, ...)."""


class ModelRecoveryError(ServerError):
    """A served model whose process died could not be loaded again."""


class InferError(HpiTritonError):
    """A request to a served model failed or was malformed."""


class InputError(InferError):
    """An input could not be read on the client side before anything was sent: a missing
    file, an unreadable image, a corrupt or encrypted PDF, a page too large to render."""


class InvalidRequestError(InferError):
    """The server refused the request as the client's mistake (HTTP 400 / gRPC
    INVALID_ARGUMENT): an undecodable, empty or oversized image, an unknown or invalid
    parameter, a wrong input. Retrying the same request fails the same way."""


class ServiceUnavailableError(InferError):
    """The server cannot serve the request now (HTTP 503 / gRPC UNAVAILABLE): a model is
    being reloaded after its process died, or the licence refuses it. A retry may succeed
    once the model is back or a certificate is installed."""


class ServerFaultError(InferError):
    """The server failed on a valid request (HTTP 500 / gRPC INTERNAL, or no answer)."""


class LicensingError(HpiTritonError):
    """A licensing step failed: a bad serial, request, key or certificate, or a refusal by
    the activation service."""


class BenchError(HpiTritonError):
    """A benchmark was asked for something it cannot run (no server, no images, bad levels)."""


class RequestFieldError(InvalidRequestError):
    """A request to the PaddleX-compatible HTTP API has an invalid field (bad base64, an
    undecodable image or PDF, too many pages or pixels, an unknown parameter); ``field``
    names it. Answered with HTTP 422, as PaddleX answers."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class URLRefusedError(RequestFieldError):
    """A ``file`` URL the PaddleX-compatible API will not fetch: URL inputs are off, the
    host resolves to a loopback / private / link-local address, or the fetch failed."""
