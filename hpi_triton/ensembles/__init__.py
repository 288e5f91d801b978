"""Pipelines served as server-side graphs over separately served engine models.

A pipeline names roles (PaddleX SubModules: TextDetection, TextRecognition, ...); each role's
model dir is built like any ``--model`` into an engine model named ``<pipeline>_<role>``, then
the pipeline writes its orchestration: a Triton ensemble of pre-processing model → engine →
post-processing model for the single-model vision pipelines (:mod:`.vision`), a BLS model
calling the engines for the multi-model ones (OCR, documents, tables), whose control flow
depends on intermediate results. Each pipeline is one class in its own module, registered by
name (:mod:`.registry`); :mod:`.paddlex_yaml` reads and writes PaddleX's pipeline YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from hpi_triton.ensembles import registry
from hpi_triton.ensembles.paddlex_yaml import null_model_dirs, read_pipeline_config
from hpi_triton.errors import BuildError

__all__ = ["load_pipeline_config", "null_model_dirs", "pipeline_names", "pipeline_spec",
           "read_pipeline_config"]


def pipeline_names():
    """The pipelines one can build (``--pipeline``), from the registry."""
    return registry.names()


def pipeline_spec(name: str, roles: Dict[str, Path], params: Optional[dict] = None,
                  backends: Optional[Dict[str, str]] = None, instances: int = 2,
                  served_name: Optional[str] = None, fast: bool = False):
    """The spec of pipeline ``name``; an unknown name lists the known ones.

    ``served_name`` is the graph model's name in the repository (default: the pipeline's
    name); its engine models are named ``<served_name>_<Role>``. ``fast``: ``--fast``'s
    parameters added where not given (refused by a pipeline ``--fast`` does not apply to)."""
    if served_name is not None and (not served_name or served_name.startswith(".") or not all(
            c.isalnum() or c in "-_." for c in served_name)):
        raise BuildError(f"--name {served_name!r}: use letters, digits, '-', '_' or '.'")
    kind = registry.get(name)
    if fast:
        params = kind.with_fast_params(params or {})
    return kind.create(roles, params or {}, backends or {}, instances, served_name)


def load_pipeline_config(path: Path):
    """Read a PaddleX pipeline YAML (SubModules with model_dir filled in) into a spec."""
    return pipeline_spec(*read_pipeline_config(path))
