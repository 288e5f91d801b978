"""Registry of inference backends.

Backends are registered explicitly; only those whose Python packages are installed here are
registered, the rest are remembered as known-but-missing so that asking for one says what to
install instead of calling the name unknown.
"""

from __future__ import annotations

from typing import Dict, List, Type

from hpi_triton.errors import BackendUnavailableError, UnknownBackendError
from hpi_triton.triton_models.backends.base import Backend, ConvertContext, Device, NativeEntry

__all__ = ["Backend", "BackendRegistry", "ConvertContext", "Device", "NativeEntry",
           "backend_classes", "registry"]


class BackendRegistry:
    """Name → backend, with aliases; refuses duplicates; lists valid names in errors."""

    def __init__(self) -> None:
        self._backends: Dict[str, Backend] = {}
        self._aliases: Dict[str, str] = {}
        self._missing: Dict[str, str] = {}

    def register(self, backend_class: Type[Backend]) -> None:
        """Register ``backend_class`` if its packages are installed, else note it as missing."""
        names = (backend_class.name, *backend_class.aliases)
        for name in names:
            if name in self._aliases or name in self._missing:
                raise ValueError(f"backend name {name!r} is already registered")
        if not backend_class.installed():
            for name in names:
                self._missing[name] = (f"backend {backend_class.name!r} is not installed here: "
                                       f"{backend_class.install_hint}")
            return
        self._backends[backend_class.name] = backend_class()
        for name in names:
            self._aliases[name] = backend_class.name

    def canonical(self, name: str) -> str:
        """The canonical name for ``name`` or an alias of it.

        Raises:
            BackendUnavailableError: a known backend whose packages are not installed.
            UnknownBackendError: a name no backend has.
        """
        key = name.strip().lower()
        if key in self._aliases:
            return self._aliases[key]
        if key in self._missing:
            raise BackendUnavailableError(self._missing[key])
        raise UnknownBackendError(
            f"backend {name!r} is unknown; valid names: {', '.join(self.known_names())}")

    def get(self, name: str) -> Backend:
        """Return the registered backend for ``name`` or an alias of it.

        Raises:
            BackendUnavailableError: a known backend whose packages are not installed.
            UnknownBackendError: a name no backend has.
        """
        return self._backends[self.canonical(name)]

    def names(self) -> List[str]:
        """Canonical names of the registered (installed) backends."""
        return list(self._backends)

    def known_names(self) -> List[str]:
        """Every accepted spelling, installed or not."""
        return sorted(set(self._aliases) | set(self._missing))


def backend_classes() -> List[Type[Backend]]:
    """Every backend hpi-triton has, installed here or not."""
    from hpi_triton.triton_models.backends.onnx_runtime import OnnxRuntimeBackend
    from hpi_triton.triton_models.backends.openvino import OpenVINOBackend
    from hpi_triton.triton_models.backends.paddle_infer import PaddleInferBackend
    from hpi_triton.triton_models.backends.paddle_tensorrt import PaddleTensorRTBackend
    from hpi_triton.triton_models.backends.tensorrt import TensorRTBackend

    return [PaddleInferBackend, PaddleTensorRTBackend, OpenVINOBackend, OnnxRuntimeBackend,
            TensorRTBackend]


def _default_registry() -> BackendRegistry:
    reg = BackendRegistry()
    for backend_class in backend_classes():
        reg.register(backend_class)
    return reg


registry = _default_registry()
