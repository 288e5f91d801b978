"""formula_recognition: FormulaRecognition (LaTeX_OCR_rec) [+ LayoutDetection, doc roles] as
one BLS graph over separately served engine models."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import RoleModels, engine_call, write_graph_model
from hpi_triton.ensembles.doc import DOC_ROLES, doc_defaults, doc_settings
from hpi_triton.ensembles.paddlex_yaml import doc_pipeline, layout_module, module_entry
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint
from hpi_triton.ensembles.stages import LayoutStage
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.common.image_io import MAX_PIXELS
from hpi_triton.python_backend.common.parameters import Parameter, ParameterError, ParameterSet
from hpi_triton.python_backend.doc_preprocessor.doc_ops import PARAMETERS as DOC_PARAMETERS
from hpi_triton.python_backend.documents import formula_ops

FORMULA_ROLES = ("FormulaRecognition", "LayoutDetection", *DOC_ROLES)
TOKENIZER_FILE = "tokenizer.json"
# What REPORT.md says of a formula graph.
FORMULA_NOTE = ("LaTeX_OCR_rec reads one crop per engine call (as PaddleX); its export's "
                "decoding loop is inside the engine, so conversions that cannot carry the loop "
                "fall back to paddle_infer (the model's candidates above say which were tried). "
                "Regions that decode to nothing or hit the decoding limit: an INVALID_ARG error "
                "for a whole image, `warnings` in the result for layout regions.")
# PaddleX's LayoutDetection keys in formula_recognition.yaml that the served layout step does
# not apply (no PP-DocLayout weights to test them on); accepted so PaddleX's YAML builds.
LAYOUT_KEYS_NOT_APPLIED = ("layout_nms", "layout_unclip_ratio", "layout_merge_bboxes_mode")


def formula_settings(source: ModelSource) -> Dict:
    """LaTeX_OCR_rec's pre-processing and tokenizer from its inference.yml, checked.

    Raises:
        InferenceConfigError: another formula model, an unknown pre-processing op, a
            missing or unreadable tokenizer, or an export signature other than
            x [N,1,H,W] float32 → token ids [N,L] int64.
    """
    yml = source.path / "inference.yml"
    name = source.model_name
    if name not in formula_ops.FORMULA_MODELS:
        raise InferenceConfigError(
            f"{yml}: Global.model_name is {name!r}; formula_recognition serves "
            f"{list(formula_ops.FORMULA_MODELS)} (PP-FormulaNet / UniMERNet are not supported "
            f"yet)")
    ops = (source.config.get("PreProcess") or {}).get("transform_ops")
    if not ops:
        raise InferenceConfigError(f"{yml}: field 'PreProcess.transform_ops' is missing; "
                                   f"{name} needs its pre-processing")
    unknown = sorted({k for op in ops if isinstance(op, dict) for k in op}
                     - set(formula_ops.KNOWN_OPS))
    if unknown:
        raise InferenceConfigError(f"{yml}: field 'PreProcess.transform_ops' has {unknown}; "
                                   f"{name}'s ops are {list(formula_ops.KNOWN_OPS)}")
    post = source.config.get("PostProcess") or {}
    if post.get("name") != "LaTeXOCRDecode":
        raise InferenceConfigError(f"{yml}: field 'PostProcess.name' is {post.get('name')!r}; "
                                   f"{name} decodes with 'LaTeXOCRDecode'")
    if not post.get("character_dict"):
        raise InferenceConfigError(
            f"{yml}: field 'PostProcess.character_dict' is missing; {name} needs its "
            f"tokenizer there (the Hugging Face tokenizers JSON PaddleOCR's export copies "
            f"from latex_ocr_tokenizer.json): export the model again with PaddleOCR / "
            f"PaddleX, or paste that JSON under PostProcess.character_dict")
    text = formula_ops.tokenizer_json(post)
    try:
        import tokenizers  # noqa: F401
    except ImportError as exc:
        raise BuildError(f"{name} decodes with the 'tokenizers' package, which this "
                         f"environment lacks: pip install tokenizers (hpi-triton[cpu] / "
                         f"[gpu] include it)") from exc
    try:
        decoder = formula_ops.LatexDecoder(text)
    except Exception as exc:
        raise InferenceConfigError(
            f"{yml}: field 'PostProcess.character_dict' is not a tokenizer the tokenizers "
            f"library loads ({type(exc).__name__}: {str(exc)[:200]}); expected the LaTeX-OCR "
            f"tokenizer JSON (model, vocab, added_tokens)") from exc
    if decoder.eos is None:
        raise InferenceConfigError(f"{yml}: the tokenizer in 'PostProcess.character_dict' has "
                                   f"no '[EOS]' token; LaTeX-OCR's decoding loop ends with it")
    x, y = source.inputs, source.outputs
    if (len(x) != 1 or len(x[0].shape) != 4 or x[0].shape[1] != 1
            or not x[0].dtype.startswith("float") or not y or len(y[0].shape) != 2
            or not y[0].dtype.startswith("int")):
        raise InferenceConfigError(
            f"{source.path}: {name} takes x [N,1,H,W] float32 and returns token ids [N,L] "
            f"int64 (its export runs the decoding loop inside); this model has "
            f"{[(t.name, t.dtype, t.shape) for t in x]} -> "
            f"{[(t.name, t.dtype, t.shape) for t in y]}")
    return {"model_name": name, "preprocess": ops, "tokenizer": text}


# The build's switch of the doc_preprocessor stage (requests name its two switches).
USE_DOC_PREPROCESSOR = Parameter("use_doc_preprocessor", bool,
                                 description="Run the doc_preprocessor stage (default: on "
                                             "where its roles are built)")


#: What formula decoding imports: MinMaxResize (Pillow), LaTeXOCRDecode (tokenizers).
FORMULA_PACKAGES = ("Pillow", "tokenizers")


@dataclass
class FormulaStage:
    """FormulaRecognition (LaTeX_OCR_rec) served as ``engine``, for "formula" regions."""

    engine: str

    def write(self, settings, models: Dict, sources, reports, files) -> None:
        """Its decoding settings into ``settings.formula``, its engine call into ``models``,
        its tokenizer into ``files`` (written beside the graph's model.py)."""
        source = sources[self.engine]
        formula = formula_settings(source)
        files[TOKENIZER_FILE] = formula.pop("tokenizer")
        call = engine_call(self.engine, source, first_only=True)
        settings.formula = {**formula, "tokenizer_file": TOKENIZER_FILE, "model": call}
        models["FormulaRecognition"] = call


@register
@dataclass
class FormulaRecognitionPipeline(RoleModels, PipelineKind):
    """``--pipeline formula_recognition --model FormulaRecognition=DIR [--model
    LayoutDetection=DIR] [--model DocOrientationClassify=DIR] [--model DocUnwarping=DIR]``:
    PaddleX's formula_recognition (LaTeX_OCR_rec)."""

    pipeline_name = "formula_recognition"
    summary = "formulas → LaTeX (LaTeX_OCR_rec) [+ layout detection, doc preprocessing]"
    packages = FORMULA_PACKAGES
    required_roles = FORMULA_ROLES[:1]
    optional_roles = FORMULA_ROLES[1:]
    parameters = formula_ops.REQUEST_PARAMETERS | ParameterSet.of(USE_DOC_PREPROCESSOR)
    predict_params = ("use_layout_detection", "use_doc_orientation_classify",
                      "use_doc_unwarping", "layout_threshold")
    # PaddleX's formula result JSON has no ``warnings`` (ours name regions that decoded to
    # nothing).
    paddlex_endpoint = PaddleXEndpoint(
        "/formula-recognition", "formulaRecResults", "outputImages",
        formula_ops.REQUEST_PARAMETERS,
        json_view=lambda result: {k: v for k, v in result.items() if k != "warnings"})

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "formula_recognition"

    def __post_init__(self):
        self.check_roles(self.roles)
        params = dict(self.params)
        if "threshold" in params:  # LayoutDetection's own key in PaddleX's YAML
            params["layout_threshold"] = params.pop("threshold")
        self.not_applied = {k: params.pop(k) for k in LAYOUT_KEYS_NOT_APPLIED if k in params}
        # PaddleX: the pipeline's use_doc_preprocessor, unless a request names a doc switch
        use_doc = params.pop("use_doc_preprocessor", None)
        doc_given = {k: params.pop(k) for k in list(params) if k in DOC_PARAMETERS}
        max_pixels = params.pop("max_pixels", MAX_PIXELS.default)
        own = {k: params.pop(k) for k in list(params) if k in formula_ops.PARAMETERS}
        if params:
            raise BuildError(f"pipeline formula_recognition: unknown parameters "
                             f"{sorted(params)}; valid: "
                             f"{sorted(formula_ops.PARAMETERS) + ['max_pixels']} and the "
                             f"doc_preprocessor switches")
        defaults = {"use_layout_detection": "LayoutDetection" in self.roles,
                    "layout_threshold": 0.5}
        try:
            merged = formula_ops.PARAMETERS.coerce(own, defaults)
            max_pixels = MAX_PIXELS.convert(max_pixels)
        except ParameterError as exc:
            raise BuildError(f"pipeline formula_recognition: {exc}") from exc
        if merged["use_layout_detection"] and "LayoutDetection" not in self.roles:
            raise BuildError("pipeline formula_recognition: use_layout_detection=True needs "
                             "--model LayoutDetection=DIR")
        has_doc = any(role in self.roles for role in DOC_ROLES)
        if use_doc is None:
            use_doc = has_doc
        try:
            use_doc = USE_DOC_PREPROCESSOR.convert(use_doc)
        except ParameterError as exc:
            raise BuildError(f"pipeline formula_recognition: {exc}") from exc
        if use_doc and not has_doc:
            raise BuildError("pipeline formula_recognition: use_doc_preprocessor=True needs "
                             "--model DocOrientationClassify=DIR and/or DocUnwarping=DIR (or "
                             "the DocPreprocessor sub-pipeline's model_dir); set it False "
                             "without them")
        self.params = {**merged, **doc_defaults(self.roles, doc_given, self.name),
                       "use_doc_preprocessor": use_doc, "max_pixels": max_pixels}

    def check_sources(self, sources: Dict[str, ModelSource]) -> None:
        """Check the FormulaRecognition model dir before anything is converted.

        Raises:
            InferenceConfigError: see :func:`formula_settings`.
        """
        formula_settings(sources[self.model_name("FormulaRecognition")])

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph model (and the tokenizer beside its model.py).

        Returns:
            The pipeline's entry for the build report: served name, engine calls, parameters.
        """
        models, files = {}, {}
        settings = formula_ops.FormulaSettings(formula={}, models=models, params=self.params)
        FormulaStage(self.model_name("FormulaRecognition")).write(settings, models, sources,
                                                                  reports, files)
        doc_roles = {r: sources[self.model_name(r)] for r in DOC_ROLES if r in self.roles}
        if doc_roles:
            for role, src in doc_roles.items():
                models[role] = engine_call(self.model_name(role), src, first_only=True)
            settings.doc = doc_settings(doc_roles.get("DocOrientationClassify"),
                                        doc_roles.get("DocUnwarping")).to_json()
        if "LayoutDetection" in self.roles:
            LayoutStage(self.model_name("LayoutDetection"), self.roles["LayoutDetection"]
                        ).write(settings, models, sources, reports, files)
        version = write_graph_model(repo, self.name, EntryPoint.FORMULA, settings.to_json(),
                                    self.instances)
        for file_name, text in files.items():
            (version / file_name).write_text(text, encoding="utf-8")
        return PipelineReport(self.pipeline_name, self.name, models, self.params,
                              not_applied=dict(self.not_applied), notes=[FORMULA_NOTE])

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's formula_recognition config: the formula model (batch_size 1: PaddleX runs
        LaTeX_OCR_rec one crop at a time whatever its batch size), optional layout detection,
        the doc_preprocessor where built."""
        roles, params = entry["roles"], entry.get("params") or {}
        _, sub_pipelines = doc_pipeline(report, roles, params)
        modules = {"FormulaRecognition": {**module_entry(report, "FormulaRecognition",
                                                         roles["FormulaRecognition"]),
                                          "batch_size": 1}}
        if "LayoutDetection" in roles:
            modules["LayoutDetection"] = layout_module(report, roles, params)
        use_doc = bool(params.get("use_doc_preprocessor")) and bool(sub_pipelines)
        return {"pipeline_name": "formula_recognition", "use_doc_preprocessor": use_doc,
                "use_layout_detection": bool(params.get("use_layout_detection")),
                "SubModules": modules, "SubPipelines": sub_pipelines}
