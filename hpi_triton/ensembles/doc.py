"""doc_preprocessor: DocOrientationClassify and/or DocUnwarping as a BLS graph; its pieces are
reused by OCR (``use_doc_preprocessor``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.ensembles.base import RoleModels, engine_call, write_graph_model
from hpi_triton.ensembles.paddlex_yaml import doc_preprocessor_config
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.generator.plan import PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.common.image_io import MAX_PIXELS
from hpi_triton.python_backend.common.parameters import ParameterError, ParameterSet
from hpi_triton.python_backend.doc_preprocessor.doc_ops import (
    PARAMETERS,
    DocGraphSettings,
    DocSettings,
)

DOC_ROLES = ("DocOrientationClassify", "DocUnwarping")


def doc_defaults(roles, params: Dict, what: str) -> Dict:
    """use_doc_orientation_classify / use_doc_unwarping: on where the role is built (PaddleX's
    default), checked against the roles present."""
    defaults = {"use_doc_orientation_classify": "DocOrientationClassify" in roles,
                "use_doc_unwarping": "DocUnwarping" in roles}
    given = {k: v for k, v in params.items() if k in PARAMETERS}
    try:
        merged = PARAMETERS.coerce(given, defaults)
    except ParameterError as exc:
        raise BuildError(f"pipeline {what}: {exc}") from exc
    for key, role in zip(PARAMETERS, DOC_ROLES):
        if merged[key] and role not in roles:
            raise BuildError(f"pipeline {what}: {key}=True needs --model {role}=DIR")
    return merged


def doc_settings(orientation: Optional[ModelSource],
                 unwarping: Optional[ModelSource]) -> DocSettings:
    """The doc flow's settings from the role models' inference.yml / signatures."""
    settings = DocSettings()
    if orientation is not None:
        yml = orientation.path / "inference.yml"
        ops = (orientation.config.get("PreProcess") or {}).get("transform_ops")
        labels = ((orientation.config.get("PostProcess") or {}).get("Topk") or {}).get(
            "label_list") or orientation.onnx_metadata_lines(("label_list", "character"))
        if not ops:
            raise InferenceConfigError(f"{yml}: field 'PreProcess.transform_ops' is missing; "
                                       f"DocOrientationClassify needs its pre-processing")
        if not labels or not all(str(x).lstrip("-").isdigit() for x in labels):
            raise InferenceConfigError(
                f"{yml}: field 'PostProcess.Topk.label_list' is {labels!r}; "
                f"DocOrientationClassify needs angle labels such as ['0', '90', '180', '270']")
        settings.orientation_preprocess = ops
        settings.orientation_labels = [str(x) for x in labels]
    if unwarping is not None:
        x, y = unwarping.inputs[0], unwarping.outputs[0]
        if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[1] != 3 or y.shape[1] != 3:
            raise InferenceConfigError(
                f"{unwarping.path}: DocUnwarping takes x [N,3,H,W] and returns the unwarped "
                f"image [N,3,H,W] (UVDoc export); this model has {x.shape} -> {y.shape}")
    return settings


def output_image(result: Dict) -> Dict:
    """doc_preprocessor's corrected page as PaddleX's ``outputImage`` (base64 PNG, scaled
    into 2000 x 2000 as PaddleX does)."""
    import base64

    import cv2
    import numpy as np

    png = np.asarray(result["output_img"], np.uint8).tobytes()
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    h, w = image.shape[:2]
    if w > 2000 or h > 2000:
        factor = 2000 / w if w / h > 1 else 2000 / h
        png = cv2.imencode(".png", cv2.resize(image, (int(factor * w), int(factor * h))))[1]
    return {"outputImage": base64.b64encode(bytes(png)).decode("ascii")}


@register
@dataclass
class DocPreprocessorPipeline(RoleModels, PipelineKind):
    """``--pipeline doc_preprocessor --model DocOrientationClassify=DIR
    [--model DocUnwarping=DIR]`` → ``angle`` and ``output_img`` (PNG bytes)."""

    pipeline_name = "doc_preprocessor"
    summary = "document orientation and/or unwarping → the corrected page"
    parameters = PARAMETERS | ParameterSet.of(MAX_PIXELS)
    optional_roles = DOC_ROLES  # at least one
    predict_params = ("use_doc_orientation_classify", "use_doc_unwarping")
    paddlex_endpoint = PaddleXEndpoint(
        "/document-preprocessing", "docPreprocessingResults", "docPreprocessingImage",
        PARAMETERS, page_fields=output_image)

    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    name: str = "doc_preprocessor"

    def __post_init__(self):
        self.check_roles(self.roles)
        if not self.roles:
            raise BuildError(f"pipeline doc_preprocessor takes --model ROLE=DIR with at least "
                             f"one of the roles {', '.join(DOC_ROLES)}")
        others = sorted(set(self.params) - set(PARAMETERS) - {"max_pixels"})
        if others:
            raise BuildError(f"pipeline doc_preprocessor: unknown parameters {others}; valid: "
                             f"{sorted(PARAMETERS) + ['max_pixels']}")
        try:
            max_pixels = MAX_PIXELS.convert(self.params.get("max_pixels", MAX_PIXELS.default))
        except ParameterError as exc:
            raise BuildError(f"pipeline doc_preprocessor: {exc}") from exc
        self.params = {**doc_defaults(self.roles, self.params, self.name),
                       "max_pixels": max_pixels}

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the BLS graph model calling the role models built into ``repo``.

        Returns:
            The pipeline's entry for the build report: served name, engine calls, parameters.
        """
        roles = {role: sources[self.model_name(role)] for role in self.roles}
        models = {role: engine_call(self.model_name(role), src, first_only=True)
                  for role, src in roles.items()}
        settings = DocGraphSettings(
            models=models, params=self.params,
            doc=doc_settings(roles.get("DocOrientationClassify"),
                             roles.get("DocUnwarping")).to_json())
        write_graph_model(repo, self.name, EntryPoint.DOC, settings.to_json(), self.instances,
                          {"output_img": ("uint8", [-1])})
        return PipelineReport(self.pipeline_name, self.name, models, self.params)

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's doc_preprocessor config."""
        return doc_preprocessor_config(report, entry["roles"], entry.get("params") or {})

