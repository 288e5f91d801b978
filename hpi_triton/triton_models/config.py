"""Triton model configuration: small dataclasses mapped onto Triton's own ``ModelConfig`` proto.

``config.pbtxt`` is never assembled from strings: :class:`TritonModelConfig` becomes a dict in
the proto's JSON form, ``json_format.ParseDict`` checks it against
``tritonclient.grpc.model_config_pb2.ModelConfig`` (unknown fields, wrong enums and wrong types
are rejected there), and ``text_format`` writes it.

A build keeps the configs it wrote in memory (:func:`recording_writes`); what changes a staged
model edits that object and writes it again. :func:`read_pbtxt` is for a repository read from
disk.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from hpi_triton.errors import ModelConfigError

_NUMPY_TO_TRITON = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.uint16): "TYPE_UINT16",
    np.dtype(np.uint32): "TYPE_UINT32",
    np.dtype(np.uint64): "TYPE_UINT64",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float64): "TYPE_FP64",
    np.dtype(np.object_): "TYPE_STRING",
}
_TRITON_TO_NUMPY = {v: k for k, v in _NUMPY_TO_TRITON.items()}


def triton_dtype(dtype) -> str:
    """Triton's ``TYPE_*`` name for a numpy dtype (or dtype name)."""
    key = np.dtype(dtype)
    if key not in _NUMPY_TO_TRITON:
        raise ModelConfigError(f"dtype {key} has no Triton equivalent; expected one of "
                               f"{sorted(str(d) for d in _NUMPY_TO_TRITON)}")
    return _NUMPY_TO_TRITON[key]


def numpy_dtype(triton_type: str) -> np.dtype:
    """The numpy dtype of a Triton ``TYPE_*`` name."""
    if triton_type not in _TRITON_TO_NUMPY:
        raise ModelConfigError(f"data_type {triton_type!r} is not a Triton TYPE_* name")
    return _TRITON_TO_NUMPY[triton_type]


@dataclass(frozen=True)
class TensorConfig:
    """One input or output: its name, numpy dtype name and dims without the batch dim."""

    name: str
    dtype: str
    dims: Sequence[int]
    optional: bool = False


@dataclass(frozen=True)
class InstanceGroup:
    """Where instances run: ``kind`` is ``cpu`` or ``gpu``; ``gpus`` lists device ids."""

    kind: str = "cpu"
    count: int = 1
    gpus: Sequence[int] = ()


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's dynamic batcher settings."""

    max_queue_delay_microseconds: int = 0
    preferred_batch_size: Sequence[int] = ()


@dataclass(frozen=True)
class WarmupSample:
    """One warm-up request: concrete dims per input (batch dim excluded), random data."""

    name: str
    batch_size: int
    inputs: Dict[str, Sequence[int]]


@dataclass
class TritonModelConfig:
    """What hpi-triton says about one Triton model; :func:`to_proto` maps it onto the schema.

    Exactly one of ``platform`` (``onnxruntime_onnx``, ``tensorrt_plan``) and ``backend``
    (``python``, ``openvino``, ...) is normally set.
    """

    name: str
    inputs: List[TensorConfig]
    outputs: List[TensorConfig]
    platform: str = ""
    backend: str = ""
    max_batch_size: int = 0
    instance_groups: List[InstanceGroup] = field(default_factory=lambda: [InstanceGroup()])
    dynamic_batching: Optional[DynamicBatching] = None
    parameters: Dict[str, str] = field(default_factory=dict)
    default_model_filename: str = ""
    warmup: List[WarmupSample] = field(default_factory=list)
    platform_type: str = "ensemble"  # only read when platform == "ensemble"
    ensemble_steps: List[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The config in ``ModelConfig``'s JSON form."""
        config: dict = {
            "name": self.name,
            "max_batch_size": self.max_batch_size,
            "input": [_tensor_dict(t) for t in self.inputs],
            "output": [_tensor_dict(t, output=True) for t in self.outputs],
        }
        if self.platform:
            config["platform"] = self.platform
        if self.backend:
            config["backend"] = self.backend
        if self.default_model_filename:
            config["default_model_filename"] = self.default_model_filename
        if self.ensemble_steps:
            config["ensemble_scheduling"] = {"step": self.ensemble_steps}
        else:
            config["instance_group"] = [_instance_dict(g) for g in self.instance_groups]
        if self.dynamic_batching is not None:
            batching: dict = {
                "max_queue_delay_microseconds": self.dynamic_batching.max_queue_delay_microseconds
            }
            if self.dynamic_batching.preferred_batch_size:
                batching["preferred_batch_size"] = list(
                    self.dynamic_batching.preferred_batch_size
                )
            config["dynamic_batching"] = batching
        if self.parameters:
            config["parameters"] = {
                k: {"string_value": str(v)} for k, v in sorted(self.parameters.items())
            }
        if self.warmup:
            config["model_warmup"] = [self._warmup_dict(w) for w in self.warmup]
        return config

    def _warmup_dict(self, sample: WarmupSample) -> dict:
        dtypes = {t.name: t.dtype for t in self.inputs}
        return {
            "name": sample.name,
            "batch_size": sample.batch_size,
            "inputs": {
                name: {"data_type": triton_dtype(dtypes[name]), "dims": list(dims),
                       "random_data": True}
                for name, dims in sample.inputs.items()
            },
        }

    def to_proto(self) -> model_config_pb2.ModelConfig:
        """Validate against Triton's schema and return the proto."""
        try:
            return json_format.ParseDict(self.to_dict(), model_config_pb2.ModelConfig())
        except json_format.ParseError as exc:
            raise ModelConfigError(f"model {self.name!r}: config does not fit Triton's "
                                   f"ModelConfig schema: {exc}") from exc

    def to_pbtxt(self) -> str:
        """``config.pbtxt`` text."""
        return text_format.MessageToString(self.to_proto())

    def write(self, model_dir: Path) -> Path:
        """Write ``config.pbtxt`` into ``model_dir`` and return its path (and note this
        config in the :func:`recording_writes` open here, if any)."""
        path = Path(model_dir) / "config.pbtxt"
        path.write_text(self.to_pbtxt())
        written = _WRITTEN.get()
        if written is not None:
            written[self.name] = self
        return path


_WRITTEN: ContextVar[Optional[Dict[str, TritonModelConfig]]] = ContextVar("written_configs",
                                                                           default=None)


@contextlib.contextmanager
def recording_writes() -> Iterator[Dict[str, TritonModelConfig]]:
    """Collect the configs :meth:`TritonModelConfig.write` writes while open, by model name.

    The build opens one around each pipeline's ``write``: the pipelines construct their graph
    and step models' configs themselves, and this is how those typed objects reach the build
    (:attr:`~hpi_triton.generator.plan.PipelineReport.configs`) for the transforms to edit,
    instead of them reading back the ``config.pbtxt`` just written. Only the innermost
    recording open sees a write.
    """
    written: Dict[str, TritonModelConfig] = {}
    token = _WRITTEN.set(written)
    try:
        yield written
    finally:
        _WRITTEN.reset(token)


def _tensor_dict(tensor: TensorConfig, output: bool = False) -> dict:
    entry = {
        "name": tensor.name,
        "data_type": triton_dtype(tensor.dtype),
        "dims": [int(d) for d in tensor.dims],
    }
    if tensor.optional and not output:
        entry["optional"] = True
    return entry


def _instance_dict(group: InstanceGroup) -> dict:
    kinds = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
    if group.kind not in kinds:
        raise ModelConfigError(f"instance group kind {group.kind!r}; expected 'cpu' or 'gpu'")
    entry = {"kind": kinds[group.kind], "count": group.count}
    if group.kind == "gpu":
        entry["gpus"] = list(group.gpus) or [0]
    return entry


def read_pbtxt(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a ``config.pbtxt`` with Triton's schema (a repository read from disk; a build
    edits the configs it holds instead); a clear error names the file."""
    try:
        return text_format.Parse(Path(path).read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as exc:
        raise ModelConfigError(f"{path}: not a valid Triton model config: {exc}") from exc
