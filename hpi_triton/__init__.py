"""hpi-triton: PaddleX models as verified Triton Inference Server model repositories."""

from hpi_triton.errors import HpiTritonError

__version__ = "0.1.0"

__all__ = ["HpiTritonError", "__version__"]
