"""PaddleX pipeline configs that reproduce a built repository's pipeline: the same model
directories (``build_report.json`` names each engine's source), the same parameters, the same
recognition batch size; and the per-request parameters PaddleX's ``predict`` takes. Each
pipeline writes its own config (:meth:`PipelineKind.paddlex_config`); this module finds the
entry, renames models and assembles the job."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import yaml

from hpi_triton.ensembles import registry
from hpi_triton.ensembles.paddlex_yaml import module_entry
from hpi_triton.errors import BuildError, UnsupportedComparison
from hpi_triton.generator.plan import PipelineReport

__all__ = ["UnsupportedComparison", "paddlex_job", "pipeline_entry", "rename_models"]


def pipeline_entry(report: Dict, served_name: str) -> Dict:
    """The report's entry of the pipeline served as ``served_name``.

    Raises:
        UnsupportedComparison: no pipeline of that name was built into the repository.
    """
    entries = report.get("pipelines") or []
    for entry in entries:
        if PipelineReport.from_dict(entry).served_name == served_name:
            return entry
    known = [PipelineReport.from_dict(e).served_name for e in entries]
    raise UnsupportedComparison(f"--pipeline {served_name!r} is not in the repository's "
                                f"build_report.json; it serves {known}")


def rename_models(report: Dict, entry: Dict, config: Dict, names: Dict[str, str],
                  workdir: Optional[Path]) -> Dict:
    """``config`` with each role of ``names`` run as that PaddleX model: for models whose
    inference.yml names a model PaddleX does not know (a fine-tuned model under its own
    name, a converted one), the PaddleX model it is a variant of. PaddleX checks the name
    against the directory's inference.yml, so the model runs from a copy of its directory
    in ``workdir`` (weights linked, not copied) whose inference.yml says that name.

    Raises:
        UnsupportedComparison: a role the pipeline does not have.
    """
    unknown = sorted(set(names) - set(entry["roles"]))
    if unknown:
        raise UnsupportedComparison(f"--paddlex-model-name {unknown}: the pipeline's roles "
                                    f"are {sorted(entry['roles'])}")
    renamed = {}
    for role, name in names.items():
        source = Path(module_entry(report, role, entry["roles"][role])["model_dir"])
        target = Path(workdir) / f"{role}-{name}"
        target.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.name != "inference.yml" and not (target / item.name).exists():
                (target / item.name).symlink_to(item.resolve())
        config_yml = yaml.safe_load((source / "inference.yml").read_text()) or {}
        config_yml.setdefault("Global", {})["model_name"] = name
        (target / "inference.yml").write_text(yaml.safe_dump(config_yml, allow_unicode=True,
                                                             sort_keys=False))
        renamed[str(source)] = (name, str(target))

    def walk(node):
        if isinstance(node, dict):
            if node.get("model_dir") in renamed:
                node["model_name"], node["model_dir"] = renamed[node["model_dir"]]
            for value in node.values():
                walk(value)

    walk(config)
    return config


def paddlex_job(report: Dict, served_name: str, paths: List[str], params: Dict,
                model_names: Optional[Dict[str, str]] = None,
                workdir: Optional[Path] = None) -> Dict:
    """The job :mod:`paddlex_runner` runs: config, inputs, predict() arguments, engine.

    Legacy (``.pdmodel``) directories need Paddle's plain executor in PaddleX 3.7 (its default
    oneDNN mode fails on them): ``engine="paddle_static", run_mode="paddle"``, used for all.
    ``model_names`` (role → PaddleX model name) runs those roles' models under that name from
    copies of their directories in ``workdir`` (:func:`rename_models`).

    Raises:
        UnsupportedComparison: the pipeline writes no PaddleX config, or a parameter is
            not one PaddleX's predict() takes.
    """
    entry = pipeline_entry(report, served_name)
    kind = entry.get("pipeline")
    try:
        pipeline = registry.get(kind)
    except BuildError:
        pipeline = None
    config = pipeline.paddlex_config(report, entry) if pipeline is not None else None
    if config is None:
        comparable = [n for n, cls in registry.kinds().items() if cls.comparable()]
        raise UnsupportedComparison(f"comparing {kind!r} with PaddleX is not supported yet; "
                                    f"supported: {comparable}")
    predict_names = pipeline.predict_params
    unknown = sorted(set(params) - set(predict_names))
    if unknown:
        raise UnsupportedComparison(f"--param {unknown}: PaddleX's {kind} predict() does not "
                                    f"take them; it takes {list(predict_names)}")
    # Values from the command line are strings; PaddleX's predict() compares them as numbers.
    predict = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in params.items()}
    config = rename_models(report, entry, config, model_names or {}, workdir)
    return {"config": config, "inputs": paths, "predict": predict,
            "device": "cpu", "engine": "paddle_static",
            "engine_config": {"paddle_static": {"run_mode": "paddle"}}}
