"""PaddleX pipeline configs that reproduce a built repository's pipeline: the same model
directories (``build_report.json`` names each engine's source), the same parameters, the same
recognition batch size; and the per-request parameters PaddleX's ``predict`` takes."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import yaml

from hpi_triton.errors import HpiTritonError

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
# Served OCR parameter → (PaddleX SubModule, its key).
_OCR_MODULE_PARAMS = {"limit_side_len": ("TextDetection", "limit_side_len"),
                      "limit_type": ("TextDetection", "limit_type"),
                      "max_side_limit": ("TextDetection", "max_side_limit"),
                      "thresh": ("TextDetection", "thresh"),
                      "box_thresh": ("TextDetection", "box_thresh"),
                      "unclip_ratio": ("TextDetection", "unclip_ratio"),
                      "text_rec_score_thresh": ("TextRecognition", "score_thresh")}
#: Per-request parameters PaddleX's OCR predict() takes (the served graph takes them too).
OCR_PREDICT_PARAMS = ("use_doc_orientation_classify", "use_doc_unwarping",
                      "use_textline_orientation", "text_det_limit_side_len",
                      "text_det_limit_type", "text_det_max_side_limit", "text_det_thresh",
                      "text_det_box_thresh", "text_det_unclip_ratio", "text_rec_score_thresh")


class UnsupportedComparison(HpiTritonError):
    """The repository's pipeline cannot be rebuilt as a PaddleX config."""


def pipeline_entry(report: Dict, served_name: str) -> Dict:
    """The report's entry of the pipeline served as ``served_name``.

    Raises:
        UnsupportedComparison: no pipeline of that name was built into the repository.
    """
    entries = report.get("pipelines") or []
    for entry in entries:
        if (entry.get("served_name") or entry.get("pipeline")) == served_name:
            return entry
    known = [e.get("served_name") or e.get("pipeline") for e in entries]
    raise UnsupportedComparison(f"--pipeline {served_name!r} is not in the repository's "
                                f"build_report.json; it serves {known}")


def _module(report: Dict, role: str, engine_call, module: str = "") -> Dict:
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


def _ocr_modules(report: Dict, roles: Dict, params: Dict, batch_size: int,
                 det_module: str = "text_detection", cls_batch_size: Optional[int] = None
                 ) -> Dict:
    """The OCR SubModules (detection, recognition, text-line orientation) with the served
    detection / recognition parameters."""
    modules = {role: _module(report, role, call) for role, call in roles.items()
               if role in ("TextDetection", "TextRecognition", "TextLineOrientation")}
    modules["TextDetection"]["module_name"] = det_module
    for ours, (role, key) in _OCR_MODULE_PARAMS.items():
        if ours in params:
            modules[role][key] = params[ours]
    modules["TextRecognition"]["batch_size"] = int(batch_size)
    if "TextLineOrientation" in modules:
        modules["TextLineOrientation"]["batch_size"] = int(cls_batch_size or 6)
    return modules


def ocr_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's OCR pipeline config for the report's OCR ``entry``."""
    roles, params = entry["roles"], entry.get("params") or {}
    modules = _ocr_modules(report, roles, params, entry.get("text_rec_batch_size", 6),
                           cls_batch_size=entry.get("textline_orientation_batch_size"))
    config = {"pipeline_name": "OCR", "text_type": "general", "SubModules": modules,
              "use_textline_orientation": bool(params.get("use_textline_orientation"))
              and "TextLineOrientation" in modules}
    config["use_doc_preprocessor"], sub_pipelines = _doc_pipeline(report, roles, params)
    if sub_pipelines:
        config["SubPipelines"] = sub_pipelines
    return config


# PaddleX module name of each single-model vision pipeline's role, and the served
# parameters its SubModule takes.
_VISION = {"image_classification": ("ImageClassification", "image_classification",
                                    ("topk",)),
           "object_detection": ("ObjectDetection", "object_detection", ("threshold",)),
           "semantic_segmentation": ("SemanticSegmentation", "semantic_segmentation",
                                     ("target_size",)),
           "instance_segmentation": ("InstanceSegmentation", "instance_segmentation",
                                     ("threshold",))}


def vision_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's config of a single-model vision pipeline (its one SubModule)."""
    kind, params = entry["pipeline"], entry.get("params") or {}
    role, module, names = _VISION[kind]
    sub = _module(report, role, entry["roles"][role], module)
    sub["batch_size"] = 1
    for name in names:
        value = params.get(name)
        sub[name] = None if name == "target_size" and value in (None, -1) else value
    return {"pipeline_name": kind, "SubModules": {role: sub}}


def _doc_preprocessor(report: Dict, roles: Dict, params: Dict) -> Optional[Dict]:
    """PaddleX's doc_preprocessor config over the built doc roles (None without any)."""
    subs = {role: _module(report, role, roles[role]) for role in
            ("DocOrientationClassify", "DocUnwarping") if role in roles}
    if not subs:
        return None
    return {"pipeline_name": "doc_preprocessor", "SubModules": subs,
            "use_doc_orientation_classify": "DocOrientationClassify" in subs
            and bool(params.get("use_doc_orientation_classify", True)),
            "use_doc_unwarping": "DocUnwarping" in subs
            and bool(params.get("use_doc_unwarping", True))}


def doc_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's doc_preprocessor config."""
    return _doc_preprocessor(report, entry["roles"], entry.get("params") or {})


def _doc_pipeline(report: Dict, roles: Dict, params: Dict):
    """(use_doc_preprocessor, {"DocPreprocessor": ...} or {}) of a pipeline that contains
    one."""
    doc = _doc_preprocessor(report, roles, params)
    if doc is None:
        return False, {}
    return bool(params.get("use_doc_preprocessor")), {"DocPreprocessor": doc}


def _layout(report: Dict, roles: Dict, params: Dict) -> Dict:
    sub = _module(report, "LayoutDetection", roles["LayoutDetection"], "layout_detection")
    sub["threshold"] = params.get("layout_threshold", 0.5)
    return sub


def _sub_ocr(report: Dict, entry: Dict, roles: Dict, params: Dict, text_type: str,
             rec_batch_size: int) -> Dict:
    """An OCR sub-pipeline of a document pipeline (``general`` or ``seal`` text): the
    entry's recognition batch size (else ``rec_batch_size``, its YAML's) and orientation
    batch size; no doc preprocessing or line orientation inside, as PaddleX's YAMLs."""
    return {"pipeline_name": "OCR", "text_type": text_type, "use_doc_preprocessor": False,
            "use_textline_orientation": False,
            "SubModules": _ocr_modules(
                report, roles, params, entry.get("text_rec_batch_size", rec_batch_size),
                det_module="seal_text_detection" if text_type == "seal" else "text_detection",
                cls_batch_size=entry.get("textline_orientation_batch_size"))}


def table_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's table_recognition (v1) config: table structure, optional layout detection,
    its GeneralOCR (recognition batch_size 1, as its YAML)."""
    roles, params = entry["roles"], entry.get("params") or {}
    use_doc, sub_pipelines = _doc_pipeline(report, roles, params)
    modules = {"TableStructureRecognition": _module(
        report, "TableStructureRecognition", roles["TableStructureRecognition"],
        "table_structure_recognition")}
    if "LayoutDetection" in roles:
        modules["LayoutDetection"] = _layout(report, roles, params)
    sub_pipelines["GeneralOCR"] = _sub_ocr(report, entry, roles, params, "general", 1)
    return {"pipeline_name": "table_recognition", "use_doc_preprocessor": use_doc,
            "use_layout_detection": bool(params.get("use_layout_detection")),
            "use_ocr_model": True, "SubModules": modules, "SubPipelines": sub_pipelines}


def seal_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's seal_recognition config: its SealOCR (seal text detection, recognition
    batch_size 1), optional layout detection."""
    roles, params = entry["roles"], entry.get("params") or {}
    use_doc, sub_pipelines = _doc_pipeline(report, roles, params)
    modules = {}
    if "LayoutDetection" in roles:
        modules["LayoutDetection"] = _layout(report, roles, params)
    sub_pipelines["SealOCR"] = _sub_ocr(report, entry, roles, params, "seal", 1)
    return {"pipeline_name": "seal_recognition", "use_doc_preprocessor": use_doc,
            "use_layout_detection": bool(params.get("use_layout_detection")),
            "SubModules": modules, "SubPipelines": sub_pipelines}


def layout_parsing_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's layout_parsing (v1, PP-ChatOCRv3-doc's visual stage) config: layout
    detection, its GeneralOCR (batch_size 6), TableRecognition and SealRecognition (its
    SealOCR's recognition batch_size 1) where built."""
    roles, params = entry["roles"], entry.get("params") or {}
    use_doc, sub_pipelines = _doc_pipeline(report, roles, params)
    sub_pipelines["GeneralOCR"] = _sub_ocr(report, entry, roles, params, "general", 6)
    if "TableStructureRecognition" in roles:
        sub_pipelines["TableRecognition"] = {
            "pipeline_name": "table_recognition", "use_layout_detection": False,
            "use_doc_preprocessor": False, "use_ocr_model": False,
            "SubModules": {"TableStructureRecognition": _module(
                report, "TableStructureRecognition", roles["TableStructureRecognition"],
                "table_structure_recognition")}}
    if "SealTextDetection" in roles:
        seal_roles = {"TextDetection": roles["SealTextDetection"],
                      "TextRecognition": roles.get("SealTextRecognition",
                                                   roles["TextRecognition"])}
        seal_params = {ours: params[f"seal_{name}"] for ours, name in (
            ("limit_side_len", "det_limit_side_len"), ("limit_type", "det_limit_type"),
            ("thresh", "det_thresh"), ("box_thresh", "det_box_thresh"),
            ("unclip_ratio", "det_unclip_ratio"), ("text_rec_score_thresh", "rec_score_thresh"))
            if f"seal_{name}" in params}
        sub_pipelines["SealRecognition"] = {
            "pipeline_name": "seal_recognition", "use_layout_detection": False,
            "use_doc_preprocessor": False, "SubPipelines": {"SealOCR": _sub_ocr(
                report, {"text_rec_batch_size": 1}, seal_roles, seal_params, "seal", 1)}}
    if "FormulaRecognition" in roles:
        sub_pipelines["FormulaRecognition"] = {
            "pipeline_name": "formula_recognition", "use_layout_detection": False,
            "use_doc_preprocessor": False, "SubModules": {"FormulaRecognition": {
                **_module(report, "FormulaRecognition", roles["FormulaRecognition"]),
                "batch_size": 1}}}
    return {"pipeline_name": "layout_parsing", "use_doc_preprocessor": use_doc,
            "use_seal_recognition": bool(params.get("use_seal_recognition"))
            and "SealTextDetection" in roles,
            "use_table_recognition": "TableStructureRecognition" in roles,
            "use_formula_recognition": bool(params.get("use_formula_recognition"))
            and "FormulaRecognition" in roles,
            "SubModules": {"LayoutDetection": _layout(report, roles, params)},
            "SubPipelines": sub_pipelines}


def formula_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's formula_recognition config: the formula model (batch_size 1: PaddleX runs
    LaTeX_OCR_rec one crop at a time whatever its batch size), optional layout detection,
    the doc_preprocessor where built."""
    roles, params = entry["roles"], entry.get("params") or {}
    _, sub_pipelines = _doc_pipeline(report, roles, params)
    modules = {"FormulaRecognition": {**_module(report, "FormulaRecognition",
                                                roles["FormulaRecognition"]), "batch_size": 1}}
    if "LayoutDetection" in roles:
        modules["LayoutDetection"] = _layout(report, roles, params)
    use_doc = bool(params.get("use_doc_preprocessor")) and bool(sub_pipelines)
    return {"pipeline_name": "formula_recognition", "use_doc_preprocessor": use_doc,
            "use_layout_detection": bool(params.get("use_layout_detection")),
            "SubModules": modules, "SubPipelines": sub_pipelines}


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
        source = Path(_module(report, role, entry["roles"][role])["model_dir"])
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


_DOC_PREDICT_PARAMS = ("use_doc_orientation_classify", "use_doc_unwarping",
                       "use_layout_detection", "layout_threshold", "text_det_limit_side_len",
                       "text_det_limit_type", "text_det_thresh", "text_det_box_thresh",
                       "text_det_unclip_ratio", "text_rec_score_thresh")
_SEAL_PREDICT_PARAMS = ("use_doc_orientation_classify", "use_doc_unwarping",
                        "use_layout_detection", "layout_threshold", "seal_det_limit_side_len",
                        "seal_det_limit_type", "seal_det_thresh", "seal_det_box_thresh",
                        "seal_det_unclip_ratio", "seal_rec_score_thresh")

CONFIGS = {"OCR": (ocr_config, OCR_PREDICT_PARAMS),
           "table_recognition": (table_config, _DOC_PREDICT_PARAMS),
           "seal_recognition": (seal_config, _SEAL_PREDICT_PARAMS),
           "layout_parsing": (layout_parsing_config,
                              tuple(dict.fromkeys(_DOC_PREDICT_PARAMS + _SEAL_PREDICT_PARAMS
                                                  + ("use_seal_recognition",
                                                     "use_table_recognition",
                                                     "use_formula_recognition")))),
           "formula_recognition": (formula_config, ("use_layout_detection",
                                                    "use_doc_orientation_classify",
                                                    "use_doc_unwarping", "layout_threshold")),
           "doc_preprocessor": (doc_config, ("use_doc_orientation_classify",
                                             "use_doc_unwarping")),
           "image_classification": (vision_config, ("topk",)),
           "object_detection": (vision_config, ("threshold",)),
           "semantic_segmentation": (vision_config, ("target_size",)),
           "instance_segmentation": (vision_config, ("threshold",))}


def paddlex_job(report: Dict, served_name: str, paths: List[str], params: Dict,
                model_names: Optional[Dict[str, str]] = None,
                workdir: Optional[Path] = None) -> Dict:
    """The job :mod:`paddlex_runner` runs: config, inputs, predict() arguments, engine.

    Legacy (``.pdmodel``) directories need Paddle's plain executor in PaddleX 3.7 (its default
    oneDNN mode fails on them): ``engine="paddle_static", run_mode="paddle"``, used for all.
    ``model_names`` (role → PaddleX model name) runs those roles' models under that name from
    copies of their directories in ``workdir`` (:func:`rename_models`).

    Raises:
        UnsupportedComparison: the pipeline is not one of :data:`CONFIGS`, or a parameter is
            not one PaddleX's predict() takes.
    """
    entry = pipeline_entry(report, served_name)
    kind = entry.get("pipeline")
    if kind not in CONFIGS:
        raise UnsupportedComparison(f"comparing {kind!r} with PaddleX is not supported yet; "
                                    f"supported: {sorted(CONFIGS)}")
    build, predict_names = CONFIGS[kind]
    unknown = sorted(set(params) - set(predict_names))
    if unknown:
        raise UnsupportedComparison(f"--param {unknown}: PaddleX's {kind} predict() does not "
                                    f"take them; it takes {list(predict_names)}")
    # Values from the command line are strings; PaddleX's predict() compares them as numbers.
    predict = {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in params.items()}
    config = rename_models(report, entry, build(report, entry), model_names or {}, workdir)
    return {"config": config, "inputs": paths, "predict": predict,
            "device": "cpu", "engine": "paddle_static",
            "engine_config": {"paddle_static": {"run_mode": "paddle"}}}
