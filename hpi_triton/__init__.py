"""hpi-triton: PaddleX models as verified Triton Inference Server model repositories."""

from hpi_triton.errors import (
    HpiTritonError,
    InferError,
    InputError,
    InvalidRequestError,
    ServerFaultError,
    ServiceUnavailableError,
)

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "HpiTritonError", "InferError", "InputError",
           "InvalidRequestError", "Prediction", "ServerFaultError", "ServiceUnavailableError",
           "__version__"]


def __getattr__(name):
    # The clients pull in tritonclient; import them only when asked for.
    if name == "Client":
        from hpi_triton.client import Client

        return Client
    if name == "AsyncClient":
        from hpi_triton.aio import AsyncClient

        return AsyncClient
    if name == "Prediction":
        from hpi_triton.results import Prediction

        return Prediction
    raise AttributeError(name)
