"""Pipelines served as server-side graphs (BLS models over separately served engine models).

A pipeline names roles (PaddleX SubModules: TextDetection, TextRecognition, ...); each role's
model dir is built like any ``--model`` into an engine model named ``<pipeline>_<role>``, then
the pipeline writes its orchestration model, which calls them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import yaml

from hpi_triton.errors import BuildError

PIPELINES = ("OCR", "image_classification", "object_detection", "semantic_segmentation")


def pipeline_spec(name: str, roles: Dict[str, Path], params: Optional[dict] = None,
                  backends: Optional[Dict[str, str]] = None, instances: int = 2):
    """The spec of pipeline ``name``; an unknown name lists the known ones."""
    key = name.strip()
    if key.upper() == "OCR":
        from hpi_triton.ensembles.ocr import OCRPipeline

        return OCRPipeline(roles=roles, params=params or {}, backends=backends or {},
                           instances=instances)
    from hpi_triton.ensembles.vision import ROLES, VisionPipeline

    if key in ROLES:
        return VisionPipeline(name=key, roles=roles, params=params or {},
                              backends=backends or {}, instances=instances)
    raise BuildError(f"--pipeline {name!r} is not supported; known pipelines: "
                     f"{', '.join(PIPELINES)}")


def load_pipeline_config(path: Path):
    """Read a PaddleX pipeline YAML (SubModules with model_dir filled in) into a spec."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"--pipeline-config {path}: not readable YAML ({exc})") from exc
    if not isinstance(config, dict) or "pipeline_name" not in config:
        raise BuildError(f"--pipeline-config {path}: expected a PaddleX pipeline YAML with "
                         f"'pipeline_name' and 'SubModules'")
    roles, params = {}, {}
    for role, sub in (config.get("SubModules") or {}).items():
        if not isinstance(sub, dict):
            continue
        model_dir = sub.get("model_dir")
        if model_dir:
            candidate = Path(model_dir)
            roles[role] = candidate if candidate.is_absolute() else path.parent / candidate
        for key, value in sub.items():
            if key not in ("module_name", "model_name", "model_dir", "batch_size"):
                params[key] = value
    for key in ("use_textline_orientation", "use_doc_preprocessor"):
        if key in config:
            params[key] = config[key]
    if config.get("SubPipelines") and config.get("use_doc_preprocessor"):
        params["use_doc_preprocessor"] = True
    return pipeline_spec(str(config["pipeline_name"]), roles, params)
