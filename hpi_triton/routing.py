"""What ``hpi-triton build``'s words mean: ``--model`` / ``--backend`` / ``--param`` / ``--name``
/ ``--pipeline`` / ``--pipeline-config`` routed to model requests and pipeline specs. Apart from
the Typer command so it can be tested (and reused) without a command line."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import ModelRequest


def pairs(values: Sequence[str], option: str) -> List[Tuple[str, str]]:
    """``NAME=VALUE`` strings as pairs; anything else is refused naming ``option``."""
    found = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise BuildError(f"{option} {value!r}; expected NAME=VALUE")
        found.append((key, rest))
    return found


def route_build(models: Sequence[str], backends: Sequence[str] = (),
                params: Sequence[str] = (), pipeline: Optional[str] = None,
                pipeline_config: Optional[Path] = None, name: Optional[str] = None,
                pipeline_instances: int = 2,
                fast: bool = False) -> Tuple[List[ModelRequest], list]:
    """The build's model requests and pipeline specs from the command line's values.

    With ``--pipeline`` or ``--pipeline-config``, ``--model`` gives ROLE=DIR (over the YAML's
    model_dir where both are given), ``--backend`` may name roles, ``--param`` sets pipeline
    defaults; otherwise ``--model`` gives NAME=DIR, each served as its own model. ``fast``:
    the pipeline gets ``--fast``'s parameters where ``--param`` gives none.

    Raises:
        BuildError: a value is not NAME=VALUE, ``--param`` / ``--name`` without a pipeline,
            or ``--backend`` names a model that is not given.
    """
    from hpi_triton.ensembles import pipeline_spec, read_pipeline_config

    chosen = dict(pairs(backends, "--backend"))
    specs = []
    if pipeline_config is not None or pipeline is not None:
        kind, roles, defaults = pipeline, {}, {}
        if pipeline_config is not None:
            # The YAML's own parameters, read by the pipeline once, with --param on top.
            kind, roles, defaults = read_pipeline_config(pipeline_config)
            if pipeline is not None and \
                    pipeline.strip().casefold() != str(kind).strip().casefold():
                raise BuildError(f"--pipeline {pipeline} but --pipeline-config "
                                 f"{pipeline_config} is PaddleX's {kind} pipeline (its "
                                 f"'pipeline_name'); drop --pipeline, or give a "
                                 f"{pipeline} YAML")
        roles.update({k: Path(v) for k, v in pairs(models, "--model")})
        defaults.update(pairs(params, "--param"))
        role_backends = {r: chosen.pop(r) for r in list(chosen) if r in roles}
        try:
            specs = [pipeline_spec(kind, roles, defaults, role_backends,
                                   instances=pipeline_instances, served_name=name,
                                   fast=fast)]
        except BuildError as exc:
            raise _with_yaml_keys(exc, pipeline_config, roles) from exc
        models = []
    elif params or name:
        raise BuildError("--param and --name apply to a pipeline; use them with --pipeline")
    requests = [ModelRequest(model, Path(path), chosen.pop(model, None))
                for model, path in pairs(models, "--model")]
    if chosen:
        raise BuildError(f"--backend names models not given with --model: {sorted(chosen)}")
    return requests, specs


def _with_yaml_keys(exc: BuildError, pipeline_config: Optional[Path], given) -> BuildError:
    """A missing-role error of a YAML build, naming the YAML keys left empty (the message
    written for --model users does not say where in the YAML to look)."""
    if pipeline_config is None:
        return exc
    import yaml

    from hpi_triton.ensembles import null_model_dirs

    # Only on this error path: the YAML, already read without error, is read again.
    config = yaml.safe_load(Path(pipeline_config).read_text())
    empty = {role: key for role, key in null_model_dirs(config).items()
             if role not in given and role in str(exc)}
    if not empty:
        return exc
    return BuildError(f"--pipeline-config {pipeline_config}: {', '.join(empty.values())} "
                      f"{'is' if len(empty) == 1 else 'are'} empty; set each to the model's "
                      f"folder (hpi-triton builds from folders; PaddleX downloads by "
                      f"model_name). ({exc})")
