"""table_recognition: TableStructureRecognition + the OCR roles [+ LayoutDetection, doc roles]
as one BLS graph over separately served engine models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

from hpi_triton.ensembles import RoleModels, engine_call, write_graph_model
from hpi_triton.ensembles.doc import DOC_ROLES
from hpi_triton.ensembles.ocr import OCR_MODULES, OCRPipeline
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.generator.model_dir import ModelSource
from hpi_triton.python_backend import request_params, table_ops
from hpi_triton.python_backend.table_pipeline import PARAMETERS

OCR_ROLES = ("TextDetection", "TextRecognition", "TextLineOrientation", *DOC_ROLES)
TABLE_ROLES = ("TableStructureRecognition", "LayoutDetection")
# PaddleX's table_recognition.yaml GeneralOCR settings, where the user gives none.
OCR_DEFAULTS = {"limit_side_len": 960, "limit_type": "max", "use_textline_orientation": False}


def structure_settings(source: ModelSource) -> Dict:
    """SLANet / SLANet_plus decoding settings from inference.yml (or the ONNX metadata)."""
    yml = source.path / "inference.yml"
    post = source.config.get("PostProcess") or {}
    tokens = post.get("character_dict") or source.onnx_metadata_lines(("character",))
    if not tokens:
        raise InferenceConfigError(f"{yml}: field 'PostProcess.character_dict' is missing; "
                                   f"TableStructureRecognition needs its structure tokens")
    ops = {k: v for op in (source.config.get("PreProcess") or {}).get("transform_ops") or []
           if isinstance(op, dict) for k, v in op.items()}
    merge = (ops.get("TableLabelEncode") or {}).get("merge_no_span_structure", True)
    characters = table_ops.structure_characters([str(t) for t in tokens], merge)
    outputs = source.outputs
    if len(outputs) != 2 or outputs[1].shape[-1] not in (-1, len(characters)):
        raise InferenceConfigError(
            f"{source.path}: TableStructureRecognition outputs "
            f"{[(t.name, t.shape) for t in outputs]}; expected cell boxes [N,L,4|8] and "
            f"structure probabilities [N,L,{len(characters)}] ({len(tokens)} tokens + "
            f"sos/eos, <td></td> merged)")
    name = str((source.config.get("Global") or {}).get("model_name", ""))
    return {"characters": characters,
            "max_len": int((ops.get("ResizeTableImage") or {}).get("max_len", 488)),
            # PaddleX: SLANet's boxes are relative to the image, others' to the padded canvas
            "canvas_boxes": name != "SLANet"}


@dataclass
class TableRecognitionPipeline(RoleModels):
    """``--pipeline table_recognition --model TableStructureRecognition=DIR --model
    TextDetection=DIR --model TextRecognition=DIR [--model LayoutDetection=DIR]
    [--model DocOrientationClassify=DIR] [--model DocUnwarping=DIR]``."""

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "table_recognition"

    task = "table_recognition"
    required = ("TableStructureRecognition",)

    def __post_init__(self):
        unknown = sorted(set(self.roles) - set(OCR_ROLES) - set(TABLE_ROLES))
        missing = [r for r in self.required if r not in self.roles]
        if missing or unknown:
            optional = [r for r in TABLE_ROLES + OCR_ROLES[2:] if r not in self.required]
            raise BuildError(f"pipeline {self.task} takes --model ROLE=DIR with roles "
                             f"{', '.join(self.required)}, TextDetection, TextRecognition "
                             f"(required) and {', '.join(optional)}; got {sorted(self.roles)}")
        params = dict(self.params)
        if "threshold" in params:  # LayoutDetection's own key in PaddleX's YAML
            params["layout_threshold"] = params.pop("threshold")
        self.params = params
        own = {k: v for k, v in self.params.items() if k in PARAMETERS}
        ocr_params = {**OCR_DEFAULTS, **{k: v for k, v in self.params.items()
                                         if k not in PARAMETERS}}
        self.ocr = OCRPipeline(roles={r: p for r, p in self.roles.items() if r in OCR_ROLES},
                               params=ocr_params, backends=self.backends, name=self.name)
        defaults = {"use_layout_detection": "LayoutDetection" in self.roles,
                    "layout_threshold": 0.5}
        try:
            self.table_params = request_params.coerce(own, PARAMETERS, defaults)
        except request_params.ParameterError as exc:
            raise BuildError(f"pipeline {self.task}: {exc}") from exc
        if self.table_params["use_layout_detection"] and "LayoutDetection" not in self.roles:
            raise BuildError(f"pipeline {self.task}: use_layout_detection=True needs "
                             f"--model LayoutDetection=DIR")
        self.params = {**self.ocr.params, **self.table_params}

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        ocr_settings, characters = self.ocr.graph_settings(sources, reports)
        settings = {"task": self.task, "ocr": ocr_settings, "table_params": self.table_params}
        models = dict(ocr_settings["models"])
        if "TableStructureRecognition" in self.roles:
            structure = sources[self.model_name("TableStructureRecognition")]
            settings["structure"] = {**structure_settings(structure), "model": engine_call(
                self.model_name("TableStructureRecognition"), structure)}
            models["TableStructureRecognition"] = settings["structure"]["model"]
        if "LayoutDetection" in self.roles:
            from hpi_triton.ensembles.vision import VisionPipeline

            layout = VisionPipeline("object_detection", {"ObjectDetection":
                                                         self.roles["LayoutDetection"]})
            settings["layout"] = layout._settings(sources[self.model_name("LayoutDetection")])
            settings["layout"]["model"][0] = self.model_name("LayoutDetection")
        version = write_graph_model(repo, self.name, "table_model.py",
                                    (*OCR_MODULES, "table_ops.py", "table_pipeline.py"),
                                    settings, self.instances)
        (version / "characters.txt").write_text("\n".join(characters), encoding="utf-8")
        if "layout" in settings:
            models["LayoutDetection"] = settings["layout"]["model"]
        return {"pipeline": self.task, "served_name": self.name, "roles": models,
                "params": self.params}


@dataclass
class LayoutParsingPipeline(TableRecognitionPipeline):
    """``--pipeline layout_parsing --model LayoutDetection=DIR --model TextDetection=DIR
    --model TextRecognition=DIR [--model TableStructureRecognition=DIR] [doc roles]``: the
    visual stage of PP-ChatOCRv3-doc (PaddleX layout_parsing v1)."""

    name: str = "layout_parsing"
    task = "layout_parsing"
    required = ("LayoutDetection",)
