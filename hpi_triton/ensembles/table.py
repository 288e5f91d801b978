"""The document pipelines — table_recognition, seal_recognition, layout_parsing — each a BLS
graph over separately served engine models, composed of the stages it was built with (their
build halves in ``stages.py`` and ``formula.FormulaStage``; run halves in
``python_backend/documents/table_pipeline.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import RoleModels, write_graph_model
from hpi_triton.ensembles.doc import DOC_ROLES
from hpi_triton.ensembles.formula import FORMULA_PACKAGES, FormulaStage, formula_settings
from hpi_triton.ensembles.ocr import FAST_PARAMS, OCRPipeline
from hpi_triton.ensembles.paddlex_yaml import doc_pipeline, layout_module, module_entry, sub_ocr
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint, doc_switches
from hpi_triton.ensembles.stages import LayoutStage, SealStage, StructureStage
from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.common.parameters import ParameterError
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


def _layout_params(pipeline: str, params: dict, has_layout: bool) -> dict:
    """:data:`PARAMETERS` (use_layout_detection, layout_threshold) taken out of ``params``
    (PaddleX's LayoutDetection ``threshold`` key too), checked; layout detection on by default
    where a LayoutDetection model is built.

    Raises:
        BuildError: a value is out of range, or layout detection is asked without a model.
    """
    if "threshold" in params:  # LayoutDetection's own key in PaddleX's YAML
        params["layout_threshold"] = params.pop("threshold")
    own = {k: params.pop(k) for k in list(params) if k in PARAMETERS}
    try:
        chosen = PARAMETERS.coerce(own, {"use_layout_detection": has_layout,
                                         "layout_threshold": 0.5})
    except ParameterError as exc:
        raise BuildError(f"pipeline {pipeline}: {exc}") from exc
    if chosen["use_layout_detection"] and not has_layout:
        raise BuildError(f"pipeline {pipeline}: use_layout_detection=True needs "
                         f"--model LayoutDetection=DIR")
    return chosen


def _write_document_graph(pipeline, repo: Path, sources, reports, ocr: OCRPipeline,
                          stages, table_params: dict) -> PipelineReport:
    """Write a document graph (the table entry point): its OCR's settings, then each stage's,
    the recognizer's characters and the stages' files beside ``model.py``."""
    ocr_settings, characters = ocr.graph_settings(sources, reports)
    settings = TableSettings(task=pipeline.pipeline_name, ocr=ocr_settings.to_json(),
                             table_params=table_params)
    models, files = dict(ocr_settings.models), {"characters.txt": "\n".join(characters)}
    for stage in stages:
        stage.write(settings, models, sources, reports, files)
    version = write_graph_model(repo, pipeline.name, EntryPoint.TABLE, settings.to_json(),
                                pipeline.instances)
    for file_name, text in files.items():
        (version / file_name).write_text(text, encoding="utf-8")
    return PipelineReport(
        pipeline.pipeline_name, pipeline.name, models, pipeline.params,
        text_rec_batch_size=ocr_settings.rec_batch_size,
        textline_orientation_batch_size=ocr_settings.cls_batch_size)


def _document_ocr(pipeline, params: dict, defaults: dict, text_type: str,
                  rec_batch_size: int) -> OCRPipeline:
    """The document pipeline's own OCR (general, or seal for seal_recognition) over its OCR
    roles, ``params`` (what is left after the stages took theirs) over its YAML's
    ``defaults``."""
    return OCRPipeline(roles={r: p for r, p in pipeline.roles.items() if r in OCR_ROLES},
                       params={**defaults, **params, "text_type": text_type},
                       backends=pipeline.backends, name=pipeline.name,
                       rec_batch_size=rec_batch_size)


@register
@dataclass
class TableRecognitionPipeline(RoleModels, PipelineKind):
    """``--pipeline table_recognition --model TableStructureRecognition=DIR --model
    TextDetection=DIR --model TextRecognition=DIR [--model LayoutDetection=DIR]
    [--model DocOrientationClassify=DIR] [--model DocUnwarping=DIR]``: OCR + structure
    [+ layout] stages."""

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "table_recognition"

    pipeline_name = "table_recognition"
    summary = "table structure → HTML over OCR [+ layout detection, doc preprocessing] (v1)"
    packages = ("pyclipper",)
    fast = True
    fast_params = FAST_PARAMS
    predict_params = TABLE_PREDICT_PARAMS
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

    def __post_init__(self):
        self.check_roles(self.roles)
        params = dict(self.params)
        has_layout = "LayoutDetection" in self.roles
        self.table_params = _layout_params(self.pipeline_name, params, has_layout)
        # PaddleX 3.7's TextRecognition.batch_size in this pipeline's YAML (its GeneralOCR)
        self.ocr = _document_ocr(self, params, OCR_DEFAULTS, "general", rec_batch_size=1)
        self.stages = [StructureStage(self.model_name("TableStructureRecognition"))]
        if has_layout:
            self.stages.append(LayoutStage(self.model_name("LayoutDetection"),
                                           self.roles["LayoutDetection"]))
        self.params = {**self.ocr.params, **self.table_params}

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph calling the OCR, structure and layout engine models.

        Returns:
            The pipeline's entry for the build report: served name, engine calls, parameters.
        """
        return _write_document_graph(self, repo, sources, reports, self.ocr, self.stages,
                                     self.table_params)

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
class SealRecognitionPipeline(RoleModels, PipelineKind):
    """``--pipeline seal_recognition --model TextDetection=DIR --model TextRecognition=DIR
    [--model LayoutDetection=DIR] [doc roles]``: PaddleX's seal_recognition. TextDetection is
    a seal text detector (DB with ``box_type: poly``); the OCR runs with ``text_type: seal``
    on each layout "seal" box, or on the whole image without layout detection."""

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
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

    def __post_init__(self):
        self.check_roles(self.roles)
        params = dict(self.params)
        has_layout = "LayoutDetection" in self.roles
        self.table_params = _layout_params(self.pipeline_name, params, has_layout)
        # its SealOCR's recognition batch_size in PaddleX 3.7's YAML
        self.ocr = _document_ocr(self, params, SEAL_DEFAULTS, "seal", rec_batch_size=1)
        self.stages = ([LayoutStage(self.model_name("LayoutDetection"),
                                    self.roles["LayoutDetection"])] if has_layout else [])
        self.params = {**self.ocr.params, **self.table_params}

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph calling the seal OCR and layout engine models.

        Returns:
            The pipeline's entry for the build report.
        """
        return _write_document_graph(self, repo, sources, reports, self.ocr, self.stages,
                                     self.table_params)

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
class LayoutParsingPipeline(RoleModels, PipelineKind):
    """``--pipeline layout_parsing --model LayoutDetection=DIR --model TextDetection=DIR
    --model TextRecognition=DIR [--model TableStructureRecognition=DIR] [--model
    SealTextDetection=DIR [--model SealTextRecognition=DIR]] [--model FormulaRecognition=DIR]
    [doc roles]``: the visual stage of PP-ChatOCRv3-doc (PaddleX layout_parsing v1). The seal
    OCR recognises with SealTextRecognition, or with TextRecognition when none is given;
    "formula" regions are read by FormulaRecognition (LaTeX_OCR_rec) when built."""

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "layout_parsing"

    pipeline_name = "layout_parsing"
    summary = ("layout regions → text, tables, seals, formulas (PP-ChatOCRv3-doc's visual "
               "stage, v1)")
    packages = ("pyclipper", "shapely")
    fast = True
    fast_params = FAST_PARAMS
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

    def __post_init__(self):
        self.check_roles(self.roles)
        params = dict(self.params)
        # --param values are strings: "false" must turn a switch off
        try:
            switches = LAYOUT_PARSING_SWITCHES.coerce(
                {k: params.pop(k) for k in list(params) if k in LAYOUT_PARSING_SWITCHES},
                {"use_formula_recognition": "FormulaRecognition" in self.roles,
                 "use_seal_recognition": "SealTextDetection" in self.roles})
        except ParameterError as exc:
            raise BuildError(f"pipeline {self.pipeline_name}: {exc}") from exc
        self.use_formula = switches["use_formula_recognition"]
        if self.use_formula and "FormulaRecognition" not in self.roles:
            raise BuildError(f"pipeline {self.pipeline_name}: use_formula_recognition=True needs "
                             f"--model FormulaRecognition=DIR (LaTeX_OCR_rec)")
        self.seal = self._seal_ocr(params, switches["use_seal_recognition"])
        self.use_seal = bool(switches["use_seal_recognition"]) and self.seal is not None
        self.table_params = _layout_params(self.pipeline_name, params, True)
        # its GeneralOCR's recognition batch_size (its SealOCR's: seal_rec_batch_size, 1)
        self.ocr = _document_ocr(self, params, OCR_DEFAULTS, "general", rec_batch_size=6)
        self.stages = []
        if "FormulaRecognition" in self.roles:
            self.stages.append(FormulaStage(self.model_name("FormulaRecognition")))
        if self.seal is not None:
            self.stages.append(SealStage(self.seal))
        if "TableStructureRecognition" in self.roles:
            self.stages.append(StructureStage(self.model_name("TableStructureRecognition")))
        self.stages.append(LayoutStage(self.model_name("LayoutDetection"),
                                       self.roles["LayoutDetection"]))
        seal_params = ({k: self.seal.params[v] for k, v in SEAL_PARAMETER_NAMES.items()}
                       if self.seal is not None else {})
        self.params = {**self.ocr.params, **self.table_params,
                       "use_seal_recognition": self.use_seal,
                       "use_formula_recognition": self.use_formula, **seal_params}

    def _seal_ocr(self, params: dict, use_seal) -> Optional[OCRPipeline]:
        """The seal OCR stage's OCR (its seal_* parameters taken out of ``params``), or None
        without a SealTextDetection model."""
        seal_given = {SEAL_PARAMETER_NAMES[k]: params.pop(k)
                      for k in list(params) if k in SEAL_PARAMETER_NAMES}
        seal_batch = params.pop("seal_rec_batch_size", 1)
        if "SealTextRecognition" in self.roles and "SealTextDetection" not in self.roles:
            raise BuildError(f"pipeline {self.pipeline_name}: --model "
                             f"SealTextRecognition=DIR needs --model SealTextDetection=DIR")
        if "SealTextDetection" not in self.roles:
            if use_seal is True or seal_given:
                raise BuildError(f"pipeline {self.pipeline_name}: seal recognition needs "
                                 f"--model SealTextDetection=DIR (a seal text detector)")
            return None
        rec_role = ("SealTextRecognition" if "SealTextRecognition" in self.roles
                    else "TextRecognition")
        return OCRPipeline(
            roles={"TextDetection": self.roles["SealTextDetection"],
                   "TextRecognition": self.roles[rec_role]},
            params={**SEAL_DEFAULTS, **seal_given}, backends=self.backends,
            name=self.name, text_type="seal", rec_batch_size=seal_batch,
            engine_models={"TextDetection": self.model_name("SealTextDetection"),
                           "TextRecognition": self.model_name(rec_role)})

    def check_sources(self, sources: Dict[str, ModelSource]) -> None:
        """Check the FormulaRecognition model dir (when built) before anything converts."""
        if "FormulaRecognition" in self.roles:
            formula_settings(sources[self.model_name("FormulaRecognition")])

    def requirements(self):
        """Its packages, and formula decoding's where it reads formulas."""
        if "FormulaRecognition" in self.roles:
            return tuple(dict.fromkeys(self.packages + FORMULA_PACKAGES))
        return self.packages

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph calling the OCR, layout and built stages' engine models.

        Returns:
            The pipeline's entry for the build report.
        """
        table_params = {**self.table_params, "use_seal_recognition": self.use_seal,
                        "use_formula_recognition": self.use_formula}
        return _write_document_graph(self, repo, sources, reports, self.ocr, self.stages,
                                     table_params)

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
