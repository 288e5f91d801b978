"""Closed sets of option values as enums: a leaf module every layer may import.

Each member equals, prints and serialises as its string, so reports, configs and cache keys
read the same as before and the CLI (Typer) lists the choices and refuses others.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A closed set of option values: equal to, printed and serialised as its string
    (``enum.StrEnum`` needs Python 3.11)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Precision(Choice):
    """Engine precision (``--precision``): FP32 equals Paddle; the others trade accuracy."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class Protocol(Choice):
    """How a client talks to tritonserver (``--protocol``)."""

    HTTP = "http"
    GRPC = "grpc"


class MallocMode(Choice):
    """glibc malloc in the server (``--malloc``, ``HPI_TRITON_MALLOC``)."""

    DEFAULT = "default"  # glibc's own: freed memory goes back to the system
    TUNED = "tuned"  # keeps up to 128 MiB per arena: less CPU per request, more memory


class Quantization(Choice):
    """Post-training quantization of OCR engines (``--quantize``), gated by measured CER."""

    NONE = "none"
    INT8 = "int8"
