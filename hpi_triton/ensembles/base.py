"""What every pipeline shares: its image inputs, how its Python-backend models are written
(the runtime package shipped whole), how a graph calls an engine model, and the role models
of multi-model pipelines. Pipelines import this; it imports no pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from hpi_triton.generator.plan import ModelRequest


# The inputs every pipeline takes: encoded bytes or a decoded BGR HxWx3 array, one of them.
def image_inputs():
    """The inputs every pipeline takes: encoded bytes or a decoded BGR HxWx3 array, one of them."""
    from hpi_triton.triton_models.config import TensorConfig

    return [TensorConfig("image", "uint8", [-1], optional=True),
            TensorConfig("image_array", "uint8", [-1, -1, -1], optional=True)]


def write_python_model(repo: Path, name: str, entry: str, settings: dict, instances: int,
                       inputs, outputs) -> Path:
    """Write the Python-backend pipeline model ``name``: the runtime package with ``entry``
    (an :class:`~hpi_triton.python_backend.EntryPoint`) as its model.py, and a config with
    ``inputs`` / ``outputs`` (``TensorConfig``) and ``settings`` as its 'pipeline_settings'
    JSON. Returns the version folder."""
    from hpi_triton.python_backend import ship
    from hpi_triton.triton_models.config import InstanceGroup, TritonModelConfig

    version = repo / name / "1"
    version.mkdir(parents=True)
    ship(version, entry)
    TritonModelConfig(
        name=name, backend="python", max_batch_size=0, inputs=list(inputs),
        outputs=list(outputs), instance_groups=[InstanceGroup("cpu", instances)],
        parameters={"pipeline_settings": json.dumps(settings, sort_keys=True)},
    ).write(repo / name)
    return version


def write_graph_model(repo: Path, name: str, entry: str, settings: dict, instances: int,
                      array_outputs: Optional[dict] = None) -> Path:
    """Write the Python-backend (BLS) graph model ``name`` taking ``image`` (encoded bytes)
    or ``image_array`` (BGR HxWx3) and returning ``result`` (JSON) plus ``array_outputs``
    (name → (dtype, dims)). Returns the version folder."""
    from hpi_triton.triton_models.config import TensorConfig

    outputs = [TensorConfig("result", "object", [1])] + [
        TensorConfig(out, dtype, dims) for out, (dtype, dims) in (array_outputs or {}).items()]
    return write_python_model(repo, name, entry, settings, instances, image_inputs(), outputs)


def engine_call(name: str, source, first_only: bool = False) -> list:
    """How a graph calls the engine model ``name`` (``bls.EngineCall`` arguments): [name,
    input names, output names] of its source model, or its first input and output only."""
    if first_only:
        return [name, source.inputs[0].name, source.outputs[0].name]
    return [name, [t.name for t in source.inputs], [t.name for t in source.outputs]]


class RoleModels:
    """For pipelines whose roles each become an engine model ``<name>_<Role>``; the graph
    model is served as ``name``."""

    @property
    def served_name(self) -> str:
        """The name the graph model is served as: the pipeline's ``name``."""
        return self.name

    @property
    def graph_models(self):
        """The models this pipeline writes besides its engines."""
        return [self.served_name]

    def model_name(self, role: str) -> str:
        """Return the engine model name of ``role``: ``<name>_<role>``."""
        return f"{self.name}_{role}"

    def model_requests(self):
        """Return one build request per role model, with its backend override if any."""
        return [ModelRequest(self.model_name(role), Path(path), self.backends.get(role))
                for role, path in self.roles.items()]
