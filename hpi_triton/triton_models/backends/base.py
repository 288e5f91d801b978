"""The one small interface every backend implements: availability, convert, verify, emit."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import ClassVar, Dict, FrozenSet, Optional, Tuple

from hpi_triton.choices import Precision
from hpi_triton.core.cache import ArtifactCache
from hpi_triton.core.model_dir import ModelSource
from hpi_triton.errors import BuildError

PRECISIONS = tuple(p.value for p in Precision)


@dataclass(frozen=True)
class Device:
    """``cpu`` or ``gpu`` with a device index."""

    kind: str = "cpu"
    index: int = 0

    @classmethod
    def parse(cls, text: str) -> Device:
        """Parse ``cpu``, ``gpu`` or ``gpu:N``."""
        kind, _, index = text.strip().lower().partition(":")
        if kind not in ("cpu", "gpu") or (index and not index.isdigit()) or (
                kind == "cpu" and index):
            raise BuildError(f"--device {text!r}; expected 'cpu', 'gpu' or 'gpu:N'")
        return cls(kind, int(index or 0))

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"gpu:{self.index}"


@dataclass
class ConvertContext:
    """What a conversion needs besides the model: where, for what, and with which cache."""

    device: Device
    precision: str
    cache: ArtifactCache
    max_batch_size: int
    cpu_threads: int = 0


@dataclass
class NativeEntry:
    """How the official tritonserver container hosts an artifact without Python."""

    platform: str = ""
    backend: str = ""
    default_model_filename: str = ""
    parameters: Dict[str, str] = field(default_factory=dict)


@cache
def gpu_count() -> int:
    """Number of NVIDIA GPUs ``nvidia-smi`` lists (0 when there is no driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


class Backend(ABC):
    """One inference backend.

    Class attributes:
        name: Canonical name (``paddle_infer``, ``onnx_runtime``, ...).
        aliases: Other accepted spellings (PaddleX 3's ``paddle``, ``onnxruntime``).
        engine: The engine key in ``python_backend/engines.py`` that runs the artifact.
        modules: Python modules that must import for the backend to work here.
        packages: Distribution names whose versions enter the cache key.
        devices / precisions: What it can target.
    """

    name: ClassVar[str]
    aliases: ClassVar[Tuple[str, ...]] = ()
    engine: ClassVar[str]
    modules: ClassVar[Tuple[str, ...]] = ()
    packages: ClassVar[Tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""
    devices: ClassVar[FrozenSet[str]] = frozenset({"cpu"})
    precisions: ClassVar[FrozenSet[str]] = frozenset({"fp32"})

    @classmethod
    def installed(cls) -> bool:
        """Whether the backend's Python modules can be imported here."""
        return all(importlib.util.find_spec(m.split(".")[0]) is not None for m in cls.modules)

    def unavailable_reason(self, device: Device, precision: str) -> Optional[str]:
        """Why this backend cannot run on ``device`` at ``precision`` here, or ``None``."""
        if device.kind not in self.devices:
            return f"{self.name} does not run on {device.kind}"
        if precision not in self.precisions:
            return (f"{self.name} does not support precision {precision}; it supports "
                    f"{sorted(self.precisions)}")
        if not self.installed():
            return f"{self.name} needs {', '.join(self.modules)} ({self.install_hint})"
        if device.kind == "gpu" and gpu_count() <= device.index:
            return f"{self.name}: no NVIDIA GPU {device.index} on this machine"
        return None

    def not_applicable_reason(self, source: ModelSource) -> Optional[str]:
        """Why this backend cannot take ``source`` at all (e.g. needs a Paddle model)."""
        return None

    @abstractmethod
    def convert(self, source: ModelSource, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Write the artifact files into ``out_dir``; return the engine parameters.

        The parameters name the engine (``engine``) and the files relative to ``out_dir``
        (``model_file``, ...); they are what ``engines.create_runner`` and the served
        ``model.py`` read.

        Raises:
            ConversionError: the model could not be converted.
        """

    def verify(self, artifact_dir: Path, params: Dict[str, str], reference, tolerance: float):
        """Run the artifact on the reference's inputs and compare; see ``generator.verify``."""
        from hpi_triton.core.verify import verify_artifact

        return verify_artifact(artifact_dir, params, reference, tolerance)

    def native_entry(self, params: Dict[str, str], ctx: ConvertContext) -> Optional[NativeEntry]:
        """The official container's native hosting, or ``None`` to host it in Python."""
        return None


def copy_files(pairs, out_dir: Path) -> None:
    """Copy ``(source, name)`` pairs into ``out_dir``."""
    for src, name in pairs:
        shutil.copyfile(src, Path(out_dir) / name)
