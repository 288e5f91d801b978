"""Stage 3 of a build: the chosen artifact written as a Triton model — ``config.pbtxt`` through
Triton's proto, the engine hosted in a Python-backend model (the runtime package shipped whole)
or natively (ONNX Runtime / OpenVINO / TensorRT platforms)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

from hpi_triton.errors import BuildError
from hpi_triton.generator import samples as sample_inputs
from hpi_triton.generator.artifacts import ModelArtifacts
from hpi_triton.generator.plan import DynamicBatchingMode, Hosting, ModelReport, ModelRequest
from hpi_triton.python_backend import EntryPoint, ship
from hpi_triton.triton_models.backends import Backend
from hpi_triton.triton_models.config import (
    DynamicBatching,
    InstanceGroup,
    TensorConfig,
    TritonModelConfig,
    WarmupSample,
)


def dynamic_batching_enabled(choice: str, device_kind: str, max_batch_size: int) -> bool:
    """Whether an engine model gets Triton's dynamic batcher (``--dynamic-batching``)."""
    if max_batch_size <= 1 or choice == DynamicBatchingMode.OFF:
        return False
    return choice == DynamicBatchingMode.ON or device_kind == "gpu"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link cache files into the repository (same filesystem), else copy them."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def tensor_configs(artifacts: ModelArtifacts, meta: dict, engine_names: bool):
    """(inputs, outputs) as ``TensorConfig``: the source model's names (Python hosting) or
    the engine's own (native), dims without the batch dim when batched, output dims
    loosened to -1 where the verification samples differed."""
    source = artifacts.source
    batched = artifacts.max_batch_size > 0
    observed = meta.get("output_shapes") or []

    def dims(shape, position: int, is_output: bool):
        dims = list(shape)
        if is_output:
            for sample in observed:
                if position < len(sample) and len(sample[position]) == len(dims):
                    dims = [d if d == s else -1 for d, s in zip(dims, sample[position])]
        return dims[1:] if batched else dims

    in_names = meta["engine_inputs"] if engine_names else [t.name for t in source.inputs]
    out_names = meta["engine_outputs"] if engine_names else [t.name for t in source.outputs]
    inputs = [TensorConfig(n, t.dtype, dims(t.shape, i, False))
              for i, (n, t) in enumerate(zip(in_names, source.inputs))]
    outputs = [TensorConfig(n, t.dtype, dims(t.shape, i, True))
               for i, (n, t) in enumerate(zip(out_names, source.outputs))]
    return inputs, outputs


def _python_hosting(request: ModelRequest, artifacts: ModelArtifacts, meta: dict,
                    version_dir: Path) -> Tuple[dict, List[TensorConfig], List[TensorConfig]]:
    """The engine inside a Python-backend model: the runtime package, its parameters, and
    the uint8 inputs / outputs the pipeline asked for."""
    ship(version_dir, EntryPoint.ENGINE)
    parameters: Dict[str, str] = artifacts.runtime_params(meta["params"])
    parameters.pop("device", None)
    parameters.pop("device_id", None)
    inputs, outputs = tensor_configs(artifacts, meta, engine_names=False)
    scaled = {}
    for position, (alpha, offset) in sorted(request.uint8_inputs.items()):
        tensor = inputs[position]
        if tensor.dtype != "float32":
            raise BuildError(f"model {request.name!r}: input {tensor.name!r} is "
                             f"{tensor.dtype}; uint8 pixels scale only into float32")
        inputs[position] = TensorConfig(tensor.name, "uint8", tensor.dims)
        scaled[tensor.name] = [list(alpha), list(offset)]
    if scaled:
        parameters["uint8_inputs"] = json.dumps(scaled)
    narrowed = []
    for position in sorted(request.uint8_outputs):
        tensor = outputs[position] if position < len(outputs) else None
        if tensor is not None and tensor.dtype in ("int32", "int64"):
            outputs[position] = TensorConfig(tensor.name, "uint8", tensor.dims)
            narrowed.append(tensor.name)
    if narrowed:
        parameters["uint8_outputs"] = json.dumps(narrowed)
    return {"backend": "python", "parameters": parameters}, inputs, outputs


def emit_engine_model(repo: Path, request: ModelRequest, artifacts: ModelArtifacts,
                      backend: Backend, entry_dir: Path, meta: dict,
                      report: ModelReport) -> None:
    """Write model ``request.name`` into ``repo``: the artifact's files, the hosting and the
    config (instances, dynamic batcher, a warm-up sample at the opt shape)."""
    options = artifacts.options
    model_dir = repo / request.name
    version_dir = model_dir / "1"
    version_dir.mkdir(parents=True)
    for name in meta["files"]:
        _link_or_copy(entry_dir / name, version_dir / name)
    native = (backend.native_entry(meta["params"], artifacts.ctx)
              if options.hosting == Hosting.NATIVE else None)
    if options.hosting == Hosting.NATIVE and native is None:
        report.warn(f"{backend.name} has no native Triton hosting for this model on "
                    f"{options.device} at {options.precision}; it is served by a "
                    f"Python-backend model")
    if native is None:
        report.hosting = Hosting.PYTHON
        config_fields, inputs, outputs = _python_hosting(request, artifacts, meta, version_dir)
    else:
        report.hosting = native.platform or native.backend
        config_fields = {"platform": native.platform, "backend": native.backend,
                         "parameters": native.parameters,
                         "default_model_filename": native.default_model_filename}
        inputs, outputs = tensor_configs(artifacts, meta, engine_names=True)
    device, batch = options.device, artifacts.max_batch_size
    source = artifacts.source
    opt = sample_inputs.opt_shapes(source, batch)
    warm_dims = {n: list(s[1:] if batch else s) for n, s in opt.items()}
    warm_names = dict(zip([t.name for t in source.inputs], [t.name for t in inputs]))
    report.config = TritonModelConfig(
        name=request.name, inputs=inputs, outputs=outputs, max_batch_size=batch,
        instance_groups=[InstanceGroup(kind=device.kind, count=options.instances,
                                       gpus=[device.index] if device.kind == "gpu" else [])],
        dynamic_batching=DynamicBatching() if dynamic_batching_enabled(
            options.dynamic_batching, device.kind, batch) else None,
        warmup=[WarmupSample("opt_shape", 1, {warm_names[n]: d for n, d in warm_dims.items()})],
        **config_fields,
    )
    report.config.write(model_dir)
