"""hpi-triton: PaddleX models as verified Triton Inference Server model repositories."""

from hpi_triton.errors import (
    HpiTritonError,
    InferError,
    InvalidRequestError,
    ServerFaultError,
    ServiceUnavailableError,
)

__version__ = "0.1.0"

__all__ = ["Client", "HpiTritonError", "InferError", "InvalidRequestError",
           "ServerFaultError", "ServiceUnavailableError", "__version__"]


def __getattr__(name):
    # Client pulls in tritonclient; import it only when asked for.
    if name == "Client":
        from hpi_triton.client import Client

        return Client
    raise AttributeError(name)
