"""PaddleX pipeline configs that reproduce a built repository's pipeline: the same model
directories (``build_report.json`` names each engine's source), the same parameters, the same
recognition batch size; and the per-request parameters PaddleX's ``predict`` takes."""

from __future__ import annotations

from typing import Dict, List

import yaml

from hpi_triton.errors import HpiTritonError

# PaddleX module names of the roles (its SubModules' module_name).
MODULES = {"TextDetection": "text_detection", "TextRecognition": "text_recognition",
           "TextLineOrientation": "textline_orientation",
           "DocOrientationClassify": "doc_text_orientation", "DocUnwarping": "image_unwarping"}
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


def _module(report: Dict, role: str, engine_call) -> Dict:
    engine = engine_call[0] if isinstance(engine_call, (list, tuple)) else engine_call
    model = next((m for m in report.get("models") or [] if m.get("name") == engine), None)
    if model is None:
        raise UnsupportedComparison(f"build_report.json names no model {engine!r} (role "
                                    f"{role})")
    return {"module_name": MODULES[role], "model_name": model.get("model_name") or engine,
            "model_dir": model["source"]}


def ocr_config(report: Dict, entry: Dict) -> Dict:
    """PaddleX's OCR pipeline config for the report's OCR ``entry``."""
    roles, params = entry["roles"], entry.get("params") or {}
    modules = {role: _module(report, role, call) for role, call in roles.items()
               if role in ("TextDetection", "TextRecognition", "TextLineOrientation")}
    for ours, (role, key) in _OCR_MODULE_PARAMS.items():
        if ours in params:
            modules[role][key] = params[ours]
    modules["TextRecognition"]["batch_size"] = int(entry.get("text_rec_batch_size", 6))
    if "TextLineOrientation" in modules:
        modules["TextLineOrientation"]["batch_size"] = 6
    config = {"pipeline_name": "OCR", "text_type": "general", "SubModules": modules,
              "use_textline_orientation": bool(params.get("use_textline_orientation"))
              and "TextLineOrientation" in modules}
    doc = {role: _module(report, role, roles[role]) for role in
           ("DocOrientationClassify", "DocUnwarping") if role in roles}
    config["use_doc_preprocessor"] = bool(params.get("use_doc_preprocessor")) and bool(doc)
    if doc:
        config["SubPipelines"] = {"DocPreprocessor": {
            "pipeline_name": "doc_preprocessor", "SubModules": doc,
            "use_doc_orientation_classify": "DocOrientationClassify" in doc
            and bool(params.get("use_doc_orientation_classify", True)),
            "use_doc_unwarping": "DocUnwarping" in doc
            and bool(params.get("use_doc_unwarping", True))}}
    return config


CONFIGS = {"OCR": (ocr_config, OCR_PREDICT_PARAMS)}


def paddlex_job(report: Dict, served_name: str, paths: List[str], params: Dict) -> Dict:
    """The job :mod:`paddlex_runner` runs: config, inputs, predict() arguments, engine.

    Legacy (``.pdmodel``) directories need Paddle's plain executor in PaddleX 3.7 (its default
    oneDNN mode fails on them): ``engine="paddle_static", run_mode="paddle"``, used for all.

    Raises:
        UnsupportedComparison: the pipeline is not OCR (others: not yet), or a parameter is
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
    return {"config": build(report, entry), "inputs": paths, "predict": predict,
            "device": "cpu", "engine": "paddle_static",
            "engine_config": {"run_mode": "paddle"}}
