"""The OCR pipeline: TextDetection + TextRecognition [+ TextLineOrientation] as a BLS graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import RoleModels, engine_call, write_graph_model
from hpi_triton.ensembles.doc import DOC_ROLES, doc_defaults, doc_settings
from hpi_triton.ensembles.paddlex_yaml import doc_pipeline, ocr_modules
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint, doc_switches
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.python_backend.vision.vision_ops import parse_scale

REQUIRED_ROLES = ("TextDetection", "TextRecognition")
# What the OCR flow copies beside a graph's model.py.
TEXT_TYPES = ("general", "seal")
OPTIONAL_ROLES = ("TextLineOrientation", *DOC_ROLES)


def _transform(source: ModelSource, op: str) -> dict:
    for item in (source.config.get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(item, dict) and op in item:
            return item[op] or {}
    return {}


def _normalize(source: ModelSource, default_mean, default_std) -> dict:
    norm = _transform(source, "NormalizeImage")
    scale = norm.get("scale", 1 / 255.0)
    try:
        scale = parse_scale(scale)
    except ValueError as exc:
        raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                                   f"'NormalizeImage.scale' is {scale!r}; expected a number "
                                   f"or 'a/b'") from exc
    return {"mean": list(norm.get("mean", default_mean)), "std": list(norm.get("std", default_std)),
            "scale": scale}


def characters_of(source: ModelSource) -> List[str]:
    """The recognition character dict: inference.yml PostProcess.character_dict, else the
    ONNX model's metadata ('character')."""
    post = source.config.get("PostProcess") or {}
    chars = post.get("character_dict")
    if chars:
        return [str(c) for c in chars]
    chars = source.onnx_metadata_lines(("character", "character_dict"))
    if chars:
        return chars
    raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                               f"'PostProcess.character_dict' is missing; TextRecognition needs "
                               f"its character dict (a list of characters)")


#: PaddleX 3.7 OCR.yaml's SubModules.TextRecognition.batch_size.
PADDLEX_REC_BATCH_SIZE = 6
#: What ``--fast`` sets in the general OCR flow unless given: width-bucketed recognition
#: batches, and DB box expansion 2.0 (PaddleX's 1.5 gives tight boxes that drop the spaces
#: between words; at 2.0 word F1 rose from 0.670 to 0.843 on real A4 manual pages and from
#: 0.939 to 0.983 on rendered ones, CER not worse: bench/RESULTS.md, 2026-12-05).
FAST_PARAMS = {"text_rec_batching": "width_buckets", "text_det_unclip_ratio": 2.0}

@register
@dataclass
class OCRPipeline(RoleModels, PipelineKind):
    """``--pipeline OCR``: role dirs, default parameters, per-role backend overrides."""

    pipeline_name = "OCR"
    listing_order = 0  # the one most users come for
    summary = ("text detection + recognition [+ text-line orientation, doc preprocessing] "
               "(PP-OCR)")
    packages = ("pyclipper",)
    fast = True
    fast_params = FAST_PARAMS
    parameters = ocr_pipeline.PARAMETERS
    paddlex_endpoint = PaddleXEndpoint(
        "/ocr", "ocrResults", "ocrImage", ocr_pipeline.PARAMETERS,
        unsupported={"returnWordBox": False}, derive=doc_switches)
    required_roles = REQUIRED_ROLES
    optional_roles = OPTIONAL_ROLES
    predict_params = ("use_doc_orientation_classify", "use_doc_unwarping",
                      "use_textline_orientation", "text_det_limit_side_len",
                      "text_det_limit_type", "text_det_max_side_limit", "text_det_thresh",
                      "text_det_box_thresh", "text_det_unclip_ratio", "text_rec_score_thresh")

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "OCR"
    # PaddleX's text_type: "seal" for curved seal text (seal_recognition's SealOCR).
    text_type: str = "general"
    # Role → served engine model, where it is not ``<name>_<role>`` (layout_parsing's seal
    # OCR calls its SealTextDetection model as TextDetection).
    engine_models: Dict[str, str] = field(default_factory=dict)
    # Crops per recognition batch: PaddleX's TextRecognition.batch_size (6 in its OCR and
    # layout_parsing YAMLs, 1 in table_recognition's and seal_recognition's); batches decide
    # padding and so texts (ocr_ops.rec_batches). ``--param text_rec_batch_size=N`` or the
    # pipeline YAML's batch_size sets it.
    rec_batch_size: int = PADDLEX_REC_BATCH_SIZE
    # Crops per text-line orientation batch: PaddleX's TextLineOrientation.batch_size (6 in
    # its OCR YAML). PaddleX 3.7.2 gives every line of a batch its first line's angle
    # (ocr_pipeline.OCRFlow._orientation), so the batch size decides angles, and so texts.
    cls_batch_size: int = 6

    @property
    def reads_general_text(self) -> bool:
        """General text, not seal text (a YAML's ``text_type: seal``)."""
        return self.text_type == "general"

    def model_name(self, role: str) -> str:
        """Return the engine model that ``role`` is served as: its ``engine_models`` entry or
        ``<name>_<role>``."""
        return self.engine_models.get(role) or super().model_name(role)

    def __post_init__(self):
        self.params = dict(self.params)
        self.text_type = str(self.params.pop("text_type", self.text_type))
        self.rec_batch_size = self._batch_size("text_rec_batch_size", self.rec_batch_size,
                                               "TextRecognition")
        self.cls_batch_size = self._batch_size("textline_orientation_batch_size",
                                               self.cls_batch_size, "TextLineOrientation")
        if self.text_type not in TEXT_TYPES:
            raise BuildError(f"pipeline OCR: text_type {self.text_type!r}; expected one of "
                             f"{list(TEXT_TYPES)}")
        self.check_roles(self.roles)
        doc_roles = [r for r in DOC_ROLES if r in self.roles]
        params = {"use_doc_preprocessor": bool(doc_roles), **self.params}
        try:
            self.params = ocr_pipeline.coerce_parameters(params, None, self.text_type)
        except ocr_pipeline.ParameterError as exc:
            raise BuildError(f"pipeline OCR: {exc}") from exc
        if self.params["use_doc_preprocessor"] and not doc_roles:
            raise BuildError("pipeline OCR: use_doc_preprocessor=True needs --model "
                             "DocOrientationClassify=DIR and/or --model DocUnwarping=DIR")
        if self.params["use_doc_preprocessor"]:
            self.params.update(doc_defaults(doc_roles, params, "OCR"))
        else:  # off (PaddleX then ignores its switches): on per request only where built
            self.params.update({key: bool(self.params[key] if key in params else True)
                                and role in doc_roles for key, role in zip(
                                    ("use_doc_orientation_classify", "use_doc_unwarping"),
                                    DOC_ROLES)})

    def graph_settings(self, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """(:class:`~ocr_pipeline.OCRSettings`, characters) of the OCR flow over the role
        models built for this spec; also used by pipelines that contain OCR (table, seal,
        layout_parsing)."""
        det = sources[self.model_name("TextDetection")]
        rec = sources[self.model_name("TextRecognition")]
        models = {role: engine_call(self.model_name(role), sources[self.model_name(role)],
                                    first_only=True) for role in self.roles}
        box_type = str((det.config.get("PostProcess") or {}).get("box_type", "quad"))
        if box_type not in ("quad", "poly"):
            raise InferenceConfigError(f"{det.path / 'inference.yml'}: field "
                                       f"'PostProcess.box_type' is {box_type!r}; expected "
                                       f"'quad' or 'poly'")
        settings = ocr_pipeline.OCRSettings(
            models=models, params=self.params, text_type=self.text_type, det_box_type=box_type,
            det_normalize=_normalize(det, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            rec_batch_size=self._engine_batch(
                reports[self.model_name("TextRecognition")], self.rec_batch_size, "recognition",
                "texts may differ from PaddleX's where padding decides a character"))
        if "TextLineOrientation" in self.roles:
            cls = sources[self.model_name("TextLineOrientation")]
            size = _transform(cls, "ResizeImage").get("size", [160, 80])
            settings.cls_resize = [int(size[0]), int(size[1])]
            settings.cls_normalize = _normalize(cls, [0.485, 0.456, 0.406],
                                                [0.229, 0.224, 0.225])
            settings.cls_batch_size = self._engine_batch(
                reports[self.model_name("TextLineOrientation")], self.cls_batch_size,
                "text-line orientation", "angles may differ from PaddleX's")
        doc_roles = {r: sources[self.model_name(r)] for r in DOC_ROLES if r in self.roles}
        if doc_roles:
            settings.doc = doc_settings(doc_roles.get("DocOrientationClassify"),
                                        doc_roles.get("DocUnwarping")).to_json()
        characters = characters_of(rec)
        classes = rec.outputs[0].shape[-1]
        if classes > 0 and classes not in (len(characters) + 2, len(characters) + 1):
            raise InferenceConfigError(
                f"{rec.path}: the recognition model has {classes} classes but its character "
                f"dict has {len(characters)} entries (expected classes = entries + 2: blank "
                f"and space)")
        return settings, characters

    def _batch_size(self, name: str, default: int, role: str) -> int:
        size = self.params.pop(name, default)
        try:
            if int(size) < 1 or float(size) != int(size):
                raise ValueError
            return int(size)
        except (TypeError, ValueError):
            raise BuildError(f"pipeline {self.name}: {name}={size!r}; expected a whole number "
                             f">= 1 (PaddleX's {role}.batch_size)") from None

    def _engine_batch(self, report, wanted: int, what: str, consequence: str) -> int:
        """PaddleX's batch size ``wanted``, unless the ``what`` engine (its ``report``) takes
        fewer crops at once: then its max_batch_size, and a warning saying ``consequence``."""
        engine = report.max_batch_size or 1
        if engine < wanted:
            report.warn(f"pipeline {self.name}: the {what} engine takes batches of at most "
                        f"{engine} crops, PaddleX's batch_size is {wanted}; {consequence}")
            return engine
        return wanted

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS model ``OCR`` calling the role models built into ``repo``."""
        settings, characters = self.graph_settings(sources, reports)
        version = write_graph_model(repo, self.name, EntryPoint.OCR, settings.to_json(),
                                    self.instances)
        (version / "characters.txt").write_text("\n".join(characters), encoding="utf-8")
        return PipelineReport(self.pipeline_name, self.name, settings.models, self.params,
                              text_rec_batch_size=settings.rec_batch_size,
                              textline_orientation_batch_size=settings.cls_batch_size)

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's OCR pipeline config for the report's OCR ``entry``."""
        roles, params = entry["roles"], entry.get("params") or {}
        modules = ocr_modules(report, roles, params, entry.get("text_rec_batch_size", 6),
                              cls_batch_size=entry.get("textline_orientation_batch_size"))
        config = {"pipeline_name": "OCR", "text_type": "general", "SubModules": modules,
                  "use_textline_orientation": bool(params.get("use_textline_orientation"))
                  and "TextLineOrientation" in modules}
        config["use_doc_preprocessor"], sub_pipelines = doc_pipeline(report, roles, params)
        if sub_pipelines:
            config["SubPipelines"] = sub_pipelines
        return config
