"""Pipelines served as server-side graphs over separately served engine models.

A pipeline names roles (PaddleX SubModules: TextDetection, TextRecognition, ...); each role's
model dir is built like any ``--model`` into an engine model named ``<pipeline>_<role>``, then
the pipeline writes its orchestration: a Triton ensemble of pre-processing model → engine →
post-processing model for the single-model vision pipelines (:mod:`.vision`), a BLS model
calling the engines for the multi-model ones (OCR, documents, tables), whose control flow
depends on intermediate results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import yaml

from hpi_triton.errors import BuildError

#: The pipelines one can build (``--pipeline``); :func:`pipeline_spec` makes their specs.
PIPELINES = ("OCR", "image_classification", "object_detection", "semantic_segmentation",
             "instance_segmentation", "doc_preprocessor", "table_recognition",
             "seal_recognition", "layout_parsing", "formula_recognition")


def pipeline_spec(name: str, roles: Dict[str, Path], params: Optional[dict] = None,
                  backends: Optional[Dict[str, str]] = None, instances: int = 2,
                  served_name: Optional[str] = None):
    """The spec of pipeline ``name``; an unknown name lists the known ones.

    ``served_name`` is the graph model's name in the repository (default: the pipeline's
    name); its engine models are named ``<served_name>_<Role>``."""
    key = name.strip()
    if served_name is not None and (not served_name or served_name.startswith(".") or not all(
            c.isalnum() or c in "-_." for c in served_name)):
        raise BuildError(f"--name {served_name!r}: use letters, digits, '-', '_' or '.'")
    if key.upper() == "OCR":
        from hpi_triton.ensembles.ocr import OCRPipeline

        return OCRPipeline(roles=roles, params=params or {}, backends=backends or {},
                           instances=instances, name=served_name or "OCR")
    if key in ("table_recognition", "seal_recognition", "layout_parsing"):
        from hpi_triton.ensembles import table

        kind = {"table_recognition": table.TableRecognitionPipeline,
                "seal_recognition": table.SealRecognitionPipeline,
                "layout_parsing": table.LayoutParsingPipeline}[key]
        return kind(roles=roles, params=params or {}, backends=backends or {},
                    instances=instances, name=served_name or key)
    if key == "doc_preprocessor":
        from hpi_triton.ensembles.doc import DocPreprocessorPipeline

        return DocPreprocessorPipeline(roles=roles, params=params or {}, backends=backends or {},
                                       instances=instances, name=served_name or key)
    if key == "formula_recognition":
        from hpi_triton.ensembles.formula import FormulaRecognitionPipeline

        return FormulaRecognitionPipeline(roles=roles, params=params or {},
                                          backends=backends or {}, instances=instances,
                                          name=served_name or key)
    from hpi_triton.ensembles.vision import ROLES, VisionPipeline

    if key in ROLES:
        return VisionPipeline(name=key, roles=roles, params=params or {},
                              backends=backends or {}, instances=instances,
                              served_name=served_name)
    raise BuildError(f"--pipeline {name!r} is not supported; known pipelines: "
                     f"{', '.join(PIPELINES)}")


def load_pipeline_config(path: Path):
    """Read a PaddleX pipeline YAML (SubModules with model_dir filled in) into a spec."""
    return pipeline_spec(*read_pipeline_config(path))


def read_pipeline_config(path: Path):
    """(pipeline name, roles, parameters as the YAML gives them) of a PaddleX pipeline YAML:
    what :func:`pipeline_spec` takes, before any pipeline has read its parameters (so
    ``--param`` can be added before they are)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BuildError(f"--pipeline-config {path}: not readable YAML ({exc})") from exc
    if not isinstance(config, dict) or "pipeline_name" not in config:
        raise BuildError(f"--pipeline-config {path}: expected a PaddleX pipeline YAML with "
                         f"'pipeline_name' and 'SubModules'")
    roles, params = {}, {}
    name = str(config["pipeline_name"])
    # Nested pipelines (OCR's DocPreprocessor, table_recognition's GeneralOCR, ...): their
    # roles and switches join the top's; the top's own switches win.
    for sub in (config.get("SubPipelines") or {}).values():
        if not isinstance(sub, dict):
            continue
        if sub.get("pipeline_name") == "seal_recognition" and name != "seal_recognition":
            _read_seal_pipeline(sub, path.parent, roles, params)
        else:
            _read_modules(sub, path.parent, roles, params)
    _read_modules(config, path.parent, roles, params)
    _check_switched_roles(path, config, roles, params)
    return name, roles, params


# Optional roles and the switch that asks for them (PaddleX's names).
_SWITCHED_ROLES = {"TextLineOrientation": "use_textline_orientation",
                   "DocOrientationClassify": "use_doc_orientation_classify",
                   "DocUnwarping": "use_doc_unwarping"}
_DOC_ROLES = ("DocOrientationClassify", "DocUnwarping")


def null_model_dirs(config) -> Dict[str, str]:
    """Role → the YAML key of each SubModule of a pipeline YAML (parsed) whose ``model_dir``
    is empty (PaddleX fills those by downloading ``model_name``; a build needs the folder),
    e.g. ``SubPipelines.DocPreprocessor.SubModules.DocUnwarping.model_dir``."""
    found: Dict[str, str] = {}

    def walk(node, prefix):
        if not isinstance(node, dict):
            return
        for role, sub in (node.get("SubModules") or {}).items():
            if isinstance(sub, dict) and not sub.get("model_dir"):
                found.setdefault(role, f"{prefix}SubModules.{role}.model_dir")
        for key, sub in (node.get("SubPipelines") or {}).items():
            walk(sub, f"{prefix}SubPipelines.{key}.")

    walk(config, "")
    return found


def _check_switched_roles(path: Path, config: dict, roles: dict, params: dict) -> None:
    """A switch left on for a role whose model_dir is empty is refused, naming the YAML key:
    dropping the role would serve something else than the YAML says."""
    nulls = null_model_dirs(config)
    for role, switch in _SWITCHED_ROLES.items():
        if role in roles or role not in nulls or params.get(switch) is not True:
            continue
        if role in _DOC_ROLES and params.get("use_doc_preprocessor") is False:
            continue
        raise BuildError(f"--pipeline-config {path}: {nulls[role]} is empty while {switch} is "
                         f"True: set {nulls[role]} to the model's folder (hpi-triton builds "
                         f"from folders; PaddleX downloads by model_name), or {switch}: False")


_SWITCHES = ("use_textline_orientation", "use_doc_preprocessor", "use_doc_orientation_classify",
             "use_doc_unwarping", "use_layout_detection", "use_seal_recognition",
             "use_formula_recognition", "text_type")
# A nested seal_recognition's SealOCR parameters, as layout_parsing names them.
_SEAL_NAMES = {"limit_side_len": "seal_det_limit_side_len", "limit_type": "seal_det_limit_type",
               "thresh": "seal_det_thresh", "box_thresh": "seal_det_box_thresh",
               "unclip_ratio": "seal_det_unclip_ratio", "score_thresh": "seal_rec_score_thresh"}


def _read_seal_pipeline(config: dict, base: Path, roles: dict, params: dict) -> None:
    """layout_parsing's SealRecognition → SealOCR: roles SealTextDetection /
    SealTextRecognition and seal_det_* parameters (its own switches stay inside)."""
    seal_roles, seal_params = {}, {}
    for sub in (config.get("SubPipelines") or {}).values():
        if isinstance(sub, dict):
            _read_modules(sub, base, seal_roles, seal_params)
    roles.update({f"Seal{role}": folder for role, folder in seal_roles.items()})
    params.update({_SEAL_NAMES[k]: v for k, v in seal_params.items() if k in _SEAL_NAMES})
    if "text_rec_batch_size" in seal_params:
        params["seal_rec_batch_size"] = seal_params["text_rec_batch_size"]


def _read_modules(config: dict, base: Path, roles: dict, params: dict) -> None:
    """Roles (SubModules with model_dir), their parameters, and the pipeline's switches."""
    for role, sub in (config.get("SubModules") or {}).items():
        if not isinstance(sub, dict):
            continue
        model_dir = sub.get("model_dir")
        if model_dir:
            candidate = Path(model_dir)
            roles[role] = candidate if candidate.is_absolute() else base / candidate
        for key, value in sub.items():
            if key not in ("module_name", "model_name", "model_dir", "batch_size"):
                params[key] = value
        if role == "TextRecognition" and "batch_size" in sub:
            # decides recognition padding, so texts: served as PaddleX batches
            params["text_rec_batch_size"] = sub["batch_size"]
        if role == "TextLineOrientation" and "batch_size" in sub:
            # decides the angles PaddleX 3.7 gives (a batch takes its first line's)
            params["textline_orientation_batch_size"] = sub["batch_size"]
    for key in _SWITCHES:
        if key in config:
            params[key] = config[key]

