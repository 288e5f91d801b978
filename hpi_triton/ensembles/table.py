"""table_recognition: TableStructureRecognition + the OCR roles [+ LayoutDetection, doc roles]
as one BLS graph over separately served engine models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import RoleModels, engine_call, write_graph_model
from hpi_triton.ensembles.doc import DOC_ROLES
from hpi_triton.ensembles.formula import FORMULA_PACKAGES, TOKENIZER_FILE, formula_settings
from hpi_triton.ensembles.ocr import FAST_PARAMS, OCRPipeline
from hpi_triton.ensembles.paddlex_yaml import doc_pipeline, layout_module, module_entry, sub_ocr
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint, doc_switches
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.common.parameters import ParameterError
from hpi_triton.python_backend.documents import table_ops
from hpi_triton.python_backend.documents.table_pipeline import (
    LAYOUT_PARSING_SWITCHES,
    PARAMETERS,
    SEAL_PARAMETERS,
    TableSettings,
)
from hpi_triton.python_backend.ocr.ocr_pipeline import PARAMETERS as OCR_PARAMETERS
from hpi_triton.python_backend.ocr.ocr_pipeline import SEAL_RENAMES, SEAL_TEXT_PARAMETERS
from hpi_triton.python_backend.ocr.seal_ops import SEAL_DEFAULTS

OCR_ROLES = ("TextDetection", "TextRecognition", "TextLineOrientation", *DOC_ROLES)
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


# The per-request parameters PaddleX's table_recognition predict() takes.
TABLE_PREDICT_PARAMS = ("use_doc_orientation_classify", "use_doc_unwarping",
                        "use_layout_detection", "layout_threshold", "text_det_limit_side_len",
                        "text_det_limit_type", "text_det_thresh", "text_det_box_thresh",
                        "text_det_unclip_ratio", "text_rec_score_thresh")
# ... and seal_recognition's.
SEAL_PREDICT_PARAMS = ("use_doc_orientation_classify", "use_doc_unwarping",
                       "use_layout_detection", "layout_threshold", "seal_det_limit_side_len",
                       "seal_det_limit_type", "seal_det_thresh", "seal_det_box_thresh",
                       "seal_det_unclip_ratio", "seal_rec_score_thresh")


def _table_json(result: Dict) -> Dict:
    """PaddleX's table results show ``cell_box_list``, ``pred_html`` and ``table_ocr_pred``
    in JSON (SingleTableRecognitionResult._to_json), not ``table_region_id``."""
    tables = [{k: v for k, v in t.items() if k != "table_region_id"}
              for t in result.get("table_res_list", [])]
    return dict(result, table_res_list=tables)


def _seal_json(result: Dict) -> Dict:
    """PaddleX's seal result JSON (SealRecognitionResult._to_json): ``doc_preprocessor_res``
    only when the doc preprocessor ran, ``layout_det_res`` only when layout detection did,
    each seal as its OCR result's JSON (no ``seal_region_id``)."""
    out = {k: v for k, v in result.items()
           if k not in ("doc_preprocessor_res", "layout_det_res") or v}
    out["seal_res_list"] = [{k: v for k, v in seal.items() if k != "seal_region_id"}
                            for seal in result.get("seal_res_list", [])]
    return out


def _layout_json(result: Dict) -> Dict:
    """PaddleX's layout_parsing result JSON (LayoutParsingResult._to_json):
    ``doc_preprocessor_res`` only when it ran; table / seal / formula lists only when on and
    not empty, each item as its own JSON shows it; no ``warnings``."""
    settings = result.get("model_settings") or {}
    out = {k: v for k, v in result.items() if k not in (
        "warnings", "doc_preprocessor_res", "table_res_list", "seal_res_list",
        "formula_res_list")}
    if settings.get("use_doc_preprocessor"):
        out["doc_preprocessor_res"] = result.get("doc_preprocessor_res")
    for key, switch, drop in (("table_res_list", "use_table_recognition", "table_region_id"),
                              ("seal_res_list", "use_seal_recognition", "seal_region_id"),
                              ("formula_res_list", "use_formula_recognition", None)):
        items = result.get(key) or []
        if settings.get(switch) and items:
            out[key] = [{k: v for k, v in item.items() if k != drop} for item in items]
    return out


@register
@dataclass
class TableRecognitionPipeline(RoleModels, PipelineKind):
    """``--pipeline table_recognition --model TableStructureRecognition=DIR --model
    TextDetection=DIR --model TextRecognition=DIR [--model LayoutDetection=DIR]
    [--model DocOrientationClassify=DIR] [--model DocUnwarping=DIR]``."""

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "table_recognition"

    pipeline_name = "table_recognition"
    summary = "table structure → HTML over OCR [+ layout detection, doc preprocessing] (v1)"
    packages = ("pyclipper",)
    fast = True
    predict_params = TABLE_PREDICT_PARAMS
    fast_params = FAST_PARAMS
    parameters = OCR_PARAMETERS.with_defaults(OCR_DEFAULTS) | PARAMETERS
    # useTextlineOrientation and layoutThreshold are not fields of PaddleX's table request
    paddlex_endpoint = PaddleXEndpoint(
        "/table-recognition", "tableRecResults", "outputImages",
        OCR_PARAMETERS.without("use_textline_orientation")
        | PARAMETERS.without("layout_threshold"),
        unsupported={"useOcrModel": True, "useOcrResultsWithTableCells": False},
        derive=doc_switches, json_view=_table_json)
    required_roles = ("TableStructureRecognition", *OCR_ROLES[:2])
    optional_roles = ("LayoutDetection", *OCR_ROLES[2:])
    ocr_defaults = OCR_DEFAULTS
    text_type = "general"
    # PaddleX 3.7's TextRecognition.batch_size in this pipeline's YAML (its GeneralOCR)
    rec_batch_size = 1

    def __post_init__(self):
        self.check_roles(self.roles)
        params = dict(self.params)
        if "threshold" in params:  # LayoutDetection's own key in PaddleX's YAML
            params["layout_threshold"] = params.pop("threshold")
        self.params = self._own_params(params)
        own = {k: v for k, v in self.params.items() if k in PARAMETERS}
        ocr_params = {**self.ocr_defaults, **{k: v for k, v in self.params.items()
                                              if k not in PARAMETERS}}
        ocr_params["text_type"] = self.text_type
        self.ocr = OCRPipeline(roles={r: p for r, p in self.roles.items() if r in OCR_ROLES},
                               params=ocr_params, backends=self.backends, name=self.name,
                               rec_batch_size=self.rec_batch_size)
        defaults = {"use_layout_detection": "LayoutDetection" in self.roles,
                    "layout_threshold": 0.5}
        try:
            self.table_params = PARAMETERS.coerce(own, defaults)
        except ParameterError as exc:
            raise BuildError(f"pipeline {self.pipeline_name}: {exc}") from exc
        if self.table_params["use_layout_detection"] and "LayoutDetection" not in self.roles:
            raise BuildError(f"pipeline {self.pipeline_name}: use_layout_detection=True needs "
                             f"--model LayoutDetection=DIR")
        self.params = {**self.ocr.params, **self.table_params, **self._extra_params()}

    def _own_params(self, params: dict) -> dict:
        """Take the subclass's own parameters out of ``params``; returns the rest."""
        return params

    def _extra_params(self) -> dict:
        return {}

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph model calling the OCR, table and layout models built into ``repo``.

        The recognizer's characters and a subclass's extra files are written beside the graph's
        model.py.

        Returns:
            The pipeline's entry for the build report: served name, engine calls, parameters.
        """
        ocr_settings, characters = self.ocr.graph_settings(sources, reports)
        settings = TableSettings(task=self.pipeline_name, ocr=ocr_settings.to_json(),
                                 table_params=self.table_params)
        models = dict(ocr_settings.models)
        extra_files = self._write_extra(settings, models, sources, reports)
        if "TableStructureRecognition" in self.roles:
            structure = sources[self.model_name("TableStructureRecognition")]
            settings.structure = {**structure_settings(structure), "model": engine_call(
                self.model_name("TableStructureRecognition"), structure)}
            models["TableStructureRecognition"] = settings.structure["model"]
        if "LayoutDetection" in self.roles:
            from hpi_triton.ensembles.vision import layout_settings

            name = self.model_name("LayoutDetection")
            settings.layout = layout_settings(name, self.roles["LayoutDetection"],
                                              sources[name])
            models["LayoutDetection"] = settings.layout["model"]
        version = write_graph_model(repo, self.name, EntryPoint.TABLE, settings.to_json(),
                                    self.instances)
        (version / "characters.txt").write_text("\n".join(characters), encoding="utf-8")
        for file_name, text in extra_files.items():
            (version / file_name).write_text(text, encoding="utf-8")
        return PipelineReport(
            self.pipeline_name, self.name, models, self.params,
            text_rec_batch_size=ocr_settings.rec_batch_size,
            textline_orientation_batch_size=ocr_settings.cls_batch_size)


    def _write_extra(self, settings, models, sources, reports) -> Dict[str, str]:
        """Add a subclass's settings and engine calls; returns extra files for the graph."""
        return {}

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's table_recognition (v1) config: table structure, optional layout
        detection, its GeneralOCR (recognition batch_size 1, as its YAML)."""
        roles, params = entry["roles"], entry.get("params") or {}
        use_doc, sub_pipelines = doc_pipeline(report, roles, params)
        modules = {"TableStructureRecognition": module_entry(
            report, "TableStructureRecognition", roles["TableStructureRecognition"],
            "table_structure_recognition")}
        if "LayoutDetection" in roles:
            modules["LayoutDetection"] = layout_module(report, roles, params)
        sub_pipelines["GeneralOCR"] = sub_ocr(report, entry, roles, params, "general", 1)
        return {"pipeline_name": "table_recognition", "use_doc_preprocessor": use_doc,
                "use_layout_detection": bool(params.get("use_layout_detection")),
                "use_ocr_model": True, "SubModules": modules, "SubPipelines": sub_pipelines}


@register
@dataclass
class SealRecognitionPipeline(TableRecognitionPipeline):
    """``--pipeline seal_recognition --model TextDetection=DIR --model TextRecognition=DIR
    [--model LayoutDetection=DIR] [doc roles]``: PaddleX's seal_recognition. TextDetection is
    a seal text detector (DB with ``box_type: poly``); the OCR runs with ``text_type: seal``
    on each layout "seal" box, or on the whole image without layout detection."""

    name: str = "seal_recognition"
    pipeline_name = "seal_recognition"
    summary = "curved seal text [+ layout detection, doc preprocessing]"
    packages = ("pyclipper", "shapely")
    fast = False  # seal text stays fp32: the gate renders horizontal text
    predict_params = SEAL_PREDICT_PARAMS
    parameters = SEAL_TEXT_PARAMETERS.with_defaults(SEAL_DEFAULTS) | PARAMETERS
    paddlex_endpoint = PaddleXEndpoint(
        "/seal-recognition", "sealRecResults", "outputImages",
        OCR_PARAMETERS.only("use_doc_orientation_classify", "use_doc_unwarping")
        | PARAMETERS | SEAL_PARAMETERS, derive=doc_switches, json_view=_seal_json)
    required_roles = OCR_ROLES[:2]
    optional_roles = ("LayoutDetection", *OCR_ROLES[2:])
    ocr_defaults = SEAL_DEFAULTS
    text_type = "seal"
    rec_batch_size = 1

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's seal_recognition config: its SealOCR (seal text detection, recognition
        batch_size 1), optional layout detection."""
        roles, params = entry["roles"], entry.get("params") or {}
        use_doc, sub_pipelines = doc_pipeline(report, roles, params)
        modules = {}
        if "LayoutDetection" in roles:
            modules["LayoutDetection"] = layout_module(report, roles, params)
        sub_pipelines["SealOCR"] = sub_ocr(report, entry, roles, params, "seal", 1)
        return {"pipeline_name": "seal_recognition", "use_doc_preprocessor": use_doc,
                "use_layout_detection": bool(params.get("use_layout_detection")),
                "SubModules": modules, "SubPipelines": sub_pipelines}


# layout_parsing YAML / request names of its seal OCR's parameters → the OCR's own names.
SEAL_PARAMETER_NAMES = {name: ours for ours, (name, _) in SEAL_RENAMES.items()}
SEAL_ROLES = ("SealTextDetection", "SealTextRecognition")


@register
@dataclass
class LayoutParsingPipeline(TableRecognitionPipeline):
    """``--pipeline layout_parsing --model LayoutDetection=DIR --model TextDetection=DIR
    --model TextRecognition=DIR [--model TableStructureRecognition=DIR] [--model
    SealTextDetection=DIR [--model SealTextRecognition=DIR]] [--model FormulaRecognition=DIR]
    [doc roles]``: the visual stage of PP-ChatOCRv3-doc (PaddleX layout_parsing v1). The seal
    OCR recognises with SealTextRecognition, or with TextRecognition when none is given;
    "formula" regions are read by FormulaRecognition (LaTeX_OCR_rec) when built."""

    name: str = "layout_parsing"
    pipeline_name = "layout_parsing"
    summary = ("layout regions → text, tables, seals, formulas (PP-ChatOCRv3-doc's visual "
               "stage, v1)")
    packages = ("pyclipper", "shapely")
    fast = True
    predict_params = tuple(dict.fromkeys(TABLE_PREDICT_PARAMS + SEAL_PREDICT_PARAMS + (
        "use_seal_recognition", "use_table_recognition", "use_formula_recognition")))
    parameters = (OCR_PARAMETERS.with_defaults(OCR_DEFAULTS) | PARAMETERS
                  | LAYOUT_PARSING_SWITCHES | SEAL_PARAMETERS.with_defaults(
                      {seal: SEAL_DEFAULTS[ocr] for ocr, (seal, _) in SEAL_RENAMES.items()
                       if ocr in SEAL_DEFAULTS}))
    paddlex_endpoint = PaddleXEndpoint(
        "/layout-parsing", "layoutParsingResults", "outputImages",
        OCR_PARAMETERS | LAYOUT_PARSING_SWITCHES | PARAMETERS.only("layout_threshold")
        | SEAL_PARAMETERS, unsupported={"useTableRecognition": True}, derive=doc_switches,
        json_view=_layout_json)
    required_roles = ("LayoutDetection", *OCR_ROLES[:2])
    optional_roles = ("TableStructureRecognition", *SEAL_ROLES, "FormulaRecognition",
                      *OCR_ROLES[2:])
    rec_batch_size = 6  # its GeneralOCR's; its SealOCR's is 1 (seal_rec_batch_size)

    def _own_params(self, params: dict) -> dict:
        # --param values are strings: "false" must turn a switch off
        try:
            switches = LAYOUT_PARSING_SWITCHES.coerce(
                {k: params.pop(k) for k in list(params) if k in LAYOUT_PARSING_SWITCHES},
                {"use_formula_recognition": "FormulaRecognition" in self.roles,
                 "use_seal_recognition": "SealTextDetection" in self.roles})
        except ParameterError as exc:
            raise BuildError(f"pipeline {self.pipeline_name}: {exc}") from exc
        use_formula = switches["use_formula_recognition"]
        if use_formula and "FormulaRecognition" not in self.roles:
            raise BuildError(f"pipeline {self.pipeline_name}: use_formula_recognition=True needs "
                             f"--model FormulaRecognition=DIR (LaTeX_OCR_rec)")
        self.use_formula = use_formula
        seal_given = {SEAL_PARAMETER_NAMES[k]: params.pop(k)
                      for k in list(params) if k in SEAL_PARAMETER_NAMES}
        use_seal = switches["use_seal_recognition"]
        seal_batch = params.pop("seal_rec_batch_size", 1)
        self.seal = None
        if "SealTextRecognition" in self.roles and "SealTextDetection" not in self.roles:
            raise BuildError(f"pipeline {self.pipeline_name}: --model "
                             f"SealTextRecognition=DIR needs --model SealTextDetection=DIR")
        if "SealTextDetection" in self.roles:
            rec_role = ("SealTextRecognition" if "SealTextRecognition" in self.roles
                        else "TextRecognition")
            self.seal = OCRPipeline(
                roles={"TextDetection": self.roles["SealTextDetection"],
                       "TextRecognition": self.roles[rec_role]},
                params={**SEAL_DEFAULTS, **seal_given}, backends=self.backends,
                name=self.name, text_type="seal", rec_batch_size=seal_batch,
                engine_models={"TextDetection": self.model_name("SealTextDetection"),
                               "TextRecognition": self.model_name(rec_role)})
        elif use_seal is True or seal_given:
            raise BuildError(f"pipeline {self.pipeline_name}: seal recognition needs --model "
                             f"SealTextDetection=DIR (a seal text detector)")
        self.use_seal = bool(use_seal) and self.seal is not None
        return params

    def _extra_params(self) -> dict:
        formula = {"use_formula_recognition": self.use_formula}
        if self.seal is None:
            return {"use_seal_recognition": False, **formula}
        return {"use_seal_recognition": self.use_seal, **formula,
                **{k: self.seal.params[v] for k, v in SEAL_PARAMETER_NAMES.items()}}

    def check_sources(self, sources: Dict[str, ModelSource]) -> None:
        """Check the FormulaRecognition model dir (when built) before anything converts."""
        if "FormulaRecognition" in self.roles:
            formula_settings(sources[self.model_name("FormulaRecognition")])

    def _write_extra(self, settings, models, sources, reports) -> Dict[str, str]:
        settings.table_params = {**settings.table_params,
                                 "use_seal_recognition": self.use_seal,
                                 "use_formula_recognition": self.use_formula}
        files = {}
        if "FormulaRecognition" in self.roles:
            source = sources[self.model_name("FormulaRecognition")]
            formula = formula_settings(source)
            files[TOKENIZER_FILE] = formula.pop("tokenizer")
            call = engine_call(self.model_name("FormulaRecognition"), source, first_only=True)
            settings.formula = {**formula, "tokenizer_file": TOKENIZER_FILE, "model": call}
            models["FormulaRecognition"] = call
        if self.seal is None:
            return files
        seal_settings, characters = self.seal.graph_settings(sources, reports)
        settings.seal_ocr = seal_settings.to_json()
        models.update({f"Seal{role}": call for role, call in seal_settings.models.items()})
        return {**files, "seal_characters.txt": "\n".join(characters)}

    def requirements(self):
        """Its packages, and formula decoding's where it reads formulas."""
        if "FormulaRecognition" in self.roles:
            return tuple(dict.fromkeys(self.packages + FORMULA_PACKAGES))
        return self.packages

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's layout_parsing (v1, PP-ChatOCRv3-doc's visual stage) config: layout
        detection, its GeneralOCR (batch_size 6), TableRecognition and SealRecognition (its
        SealOCR's recognition batch_size 1) where built."""
        roles, params = entry["roles"], entry.get("params") or {}
        use_doc, sub_pipelines = doc_pipeline(report, roles, params)
        sub_pipelines["GeneralOCR"] = sub_ocr(report, entry, roles, params, "general", 6)
        if "TableStructureRecognition" in roles:
            sub_pipelines["TableRecognition"] = {
                "pipeline_name": "table_recognition", "use_layout_detection": False,
                "use_doc_preprocessor": False, "use_ocr_model": False,
                "SubModules": {"TableStructureRecognition": module_entry(
                    report, "TableStructureRecognition", roles["TableStructureRecognition"],
                    "table_structure_recognition")}}
        if "SealTextDetection" in roles:
            seal_roles = {"TextDetection": roles["SealTextDetection"],
                          "TextRecognition": roles.get("SealTextRecognition",
                                                       roles["TextRecognition"])}
            seal_params = {ours: params[name] for name, ours in SEAL_PARAMETER_NAMES.items()
                           if name in params}
            sub_pipelines["SealRecognition"] = {
                "pipeline_name": "seal_recognition", "use_layout_detection": False,
                "use_doc_preprocessor": False, "SubPipelines": {"SealOCR": sub_ocr(
                    report, {"text_rec_batch_size": 1}, seal_roles, seal_params, "seal", 1)}}
        if "FormulaRecognition" in roles:
            sub_pipelines["FormulaRecognition"] = {
                "pipeline_name": "formula_recognition", "use_layout_detection": False,
                "use_doc_preprocessor": False, "SubModules": {"FormulaRecognition": {
                    **module_entry(report, "FormulaRecognition", roles["FormulaRecognition"]),
                    "batch_size": 1}}}
        return {"pipeline_name": "layout_parsing", "use_doc_preprocessor": use_doc,
                "use_seal_recognition": bool(params.get("use_seal_recognition"))
                and "SealTextDetection" in roles,
                "use_table_recognition": "TableStructureRecognition" in roles,
                "use_formula_recognition": bool(params.get("use_formula_recognition"))
                and "FormulaRecognition" in roles,
                "SubModules": {"LayoutDetection": layout_module(report, roles, params)},
                "SubPipelines": sub_pipelines}
