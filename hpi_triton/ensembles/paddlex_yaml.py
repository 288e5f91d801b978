"""PaddleX pipeline YAML, both ways: reading one into (pipeline name, roles, parameters) for a
build, and the pieces each pipeline's :meth:`~hpi_triton.ensembles.registry.PipelineKind.
paddlex_config` writes one from (its SubModules and nested OCR / doc_preprocessor / layout
sub-pipelines), so ``hpi-triton compare`` runs PaddleX on the same model dirs and parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import yaml

from hpi_triton.errors import BuildError, UnsupportedComparison
from hpi_triton.python_backend.ocr.ocr_pipeline import PARAMETERS as OCR_PARAMETERS
from hpi_triton.python_backend.ocr.ocr_pipeline import SEAL_RENAMES


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


def _switches() -> set:
    """The keys a pipeline YAML sets at its top level: every pipeline's declared switches
    (``use_*``), and the OCR's ``text_type``."""
    from hpi_triton.ensembles.registry import kinds

    return {p.name for kind in kinds().values() for p in kind.parameters.values()
            if p.kind is bool} | {"text_type"}


# A nested seal_recognition's SealOCR YAML keys → the names layout_parsing gives them
# (``thresh`` → ``seal_det_thresh``, ``score_thresh`` → ``seal_rec_score_thresh``).
_SEAL_NAMES = {(OCR_PARAMETERS[name].yaml or name).rpartition(".")[2]: seal_name
               for name, (seal_name, _) in SEAL_RENAMES.items()}


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
    for key in _switches():
        if key in config:
            params[key] = config[key]


# PaddleX module names of the roles (its SubModules' module_name).
MODULES = {"TextDetection": "text_detection", "TextRecognition": "text_recognition",
           "TextLineOrientation": "textline_orientation",
           "DocOrientationClassify": "doc_text_orientation", "DocUnwarping": "image_unwarping",
           "LayoutDetection": "layout_detection",
           "TableStructureRecognition": "table_structure_recognition",
           "SealTextDetection": "seal_text_detection", "SealTextRecognition": "text_recognition",
           "ImageClassification": "image_classification", "ObjectDetection": "object_detection",
           "SemanticSegmentation": "semantic_segmentation",
           "InstanceSegmentation": "instance_segmentation",
           "FormulaRecognition": "formula_recognition"}
# Served OCR parameter → (PaddleX SubModule, its key), from the declarations.
OCR_MODULE_PARAMS = {p.name: tuple(p.yaml.split(".", 1)) for p in OCR_PARAMETERS.values()
                     if p.yaml}
def module_entry(report: Dict, role: str, engine_call, module: str = "") -> Dict:
    """The SubModule entry of ``role``: PaddleX's module name, the model's name and dir, and
    the engine PaddleX runs it with (ONNX Runtime for a directory with only an ONNX file)."""
    engine = engine_call[0] if isinstance(engine_call, (list, tuple)) else engine_call
    model = next((m for m in report.get("models") or [] if m.get("name") == engine), None)
    if model is None:
        raise UnsupportedComparison(f"build_report.json names no model {engine!r} (role "
                                    f"{role})")
    entry = {"module_name": module or MODULES[role],
             "model_name": model.get("model_name") or engine, "model_dir": model["source"]}
    folder = Path(model["source"])
    if (folder / "inference.onnx").is_file() and not any(
            (folder / f).is_file() for f in ("inference.json", "inference.pdmodel")):
        entry["engine"] = "onnxruntime"
    return entry


def ocr_modules(report: Dict, roles: Dict, params: Dict, batch_size: int,
                 det_module: str = "text_detection", cls_batch_size: Optional[int] = None
                 ) -> Dict:
    """The OCR SubModules (detection, recognition, text-line orientation) with the served
    detection / recognition parameters."""
    modules = {role: module_entry(report, role, call) for role, call in roles.items()
               if role in ("TextDetection", "TextRecognition", "TextLineOrientation")}
    modules["TextDetection"]["module_name"] = det_module
    for ours, (role, key) in OCR_MODULE_PARAMS.items():
        if ours in params:
            modules[role][key] = params[ours]
    modules["TextRecognition"]["batch_size"] = int(batch_size)
    if "TextLineOrientation" in modules:
        modules["TextLineOrientation"]["batch_size"] = int(cls_batch_size or 6)
    return modules


def doc_preprocessor_config(report: Dict, roles: Dict, params: Dict) -> Optional[Dict]:
    """PaddleX's doc_preprocessor config over the built doc roles (None without any)."""
    subs = {role: module_entry(report, role, roles[role]) for role in
            ("DocOrientationClassify", "DocUnwarping") if role in roles}
    if not subs:
        return None
    return {"pipeline_name": "doc_preprocessor", "SubModules": subs,
            "use_doc_orientation_classify": "DocOrientationClassify" in subs
            and bool(params.get("use_doc_orientation_classify", True)),
            "use_doc_unwarping": "DocUnwarping" in subs
            and bool(params.get("use_doc_unwarping", True))}


def doc_pipeline(report: Dict, roles: Dict, params: Dict):
    """(use_doc_preprocessor, {"DocPreprocessor": ...} or {}) of a pipeline that contains
    one."""
    doc = doc_preprocessor_config(report, roles, params)
    if doc is None:
        return False, {}
    return bool(params.get("use_doc_preprocessor")), {"DocPreprocessor": doc}


def layout_module(report: Dict, roles: Dict, params: Dict) -> Dict:
    """The LayoutDetection SubModule with the served layout threshold."""
    sub = module_entry(report, "LayoutDetection", roles["LayoutDetection"], "layout_detection")
    sub["threshold"] = params.get("layout_threshold", 0.5)
    return sub


def sub_ocr(report: Dict, entry: Dict, roles: Dict, params: Dict, text_type: str,
             rec_batch_size: int) -> Dict:
    """An OCR sub-pipeline of a document pipeline (``general`` or ``seal`` text): the
    entry's recognition batch size (else ``rec_batch_size``, its YAML's) and orientation
    batch size; no doc preprocessing or line orientation inside, as PaddleX's YAMLs."""
    return {"pipeline_name": "OCR", "text_type": text_type, "use_doc_preprocessor": False,
            "use_textline_orientation": False,
            "SubModules": ocr_modules(
                report, roles, params, entry.get("text_rec_batch_size", rec_batch_size),
                det_module="seal_text_detection" if text_type == "seal" else "text_detection",
                cls_batch_size=entry.get("textline_orientation_batch_size"))}
