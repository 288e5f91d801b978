"""The document graphs' stages, build halves: what each writes into a graph's settings
(``TableSettings`` / ``FormulaSettings``) and beside its ``model.py``. The run halves are
``python_backend/documents`` (``layout_stage.LayoutStage``, ``table_pipeline.StructureStage``,
``table_pipeline.SealStage``); the formula stage's build half is ``formula.FormulaStage``.
A pipeline composes the stages it was built with (``ensembles/table.py``,
``ensembles/formula.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import engine_call
from hpi_triton.ensembles.ocr import OCRPipeline
from hpi_triton.errors import InferenceConfigError
from hpi_triton.python_backend.documents import table_ops


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
class StructureStage:
    """Table structure (SLANet / SLANet_plus) served as ``engine``."""

    engine: str

    def write(self, settings, models: Dict, sources, reports, files) -> None:
        """Its decoding settings and engine call into ``settings.structure``."""
        source = sources[self.engine]
        settings.structure = {**structure_settings(source),
                              "model": engine_call(self.engine, source)}
        models["TableStructureRecognition"] = settings.structure["model"]


@dataclass
class LayoutStage:
    """LayoutDetection served as ``engine`` (built from ``model_dir``), run in-graph with
    vision_ops' object-detection pre/post-processing."""

    engine: str
    model_dir: Path

    def write(self, settings, models: Dict, sources, reports, files) -> None:
        """Its detection settings and engine call into ``settings.layout``."""
        from hpi_triton.ensembles.vision import layout_settings

        settings.layout = layout_settings(self.engine, self.model_dir, sources[self.engine])
        models["LayoutDetection"] = settings.layout["model"]


@dataclass
class SealStage:
    """layout_parsing's seal OCR (seal text detection + recognition, text_type seal)."""

    ocr: OCRPipeline

    def write(self, settings, models: Dict, sources, reports, files) -> None:
        """Its OCR settings into ``settings.seal_ocr``, its characters beside the graph."""
        seal_settings, characters = self.ocr.graph_settings(sources, reports)
        settings.seal_ocr = seal_settings.to_json()
        models.update({f"Seal{role}": call for role, call in seal_settings.models.items()})
        files["seal_characters.txt"] = "\n".join(characters)
