"""The OCR pipeline's orchestration, independent of where the engines run.

``OCRFlow`` takes three callables (detection, recognition, optional text-line orientation),
each mapping a float32 batch to the model's output. Inside tritonserver they are BLS calls to
the separately served engine models; in-process (the parity reference) they are engine
runners. Same code, same results. Imports nothing from the rest of hpi_triton (shipped in
the runtime package).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np

from ..common.engine import Engine, first_output
from ..common.image_io import MAX_PIXELS
from ..common.parameters import Parameter, ParameterError, ParameterSet
from ..common.settings import GraphSettings
from ..doc_preprocessor import doc_ops
from . import ocr_ops, seal_ops

__all__ = ["PARAMETERS", "OCRFlow", "OCRSettings", "ParameterError", "coerce_parameters"]

# Names and defaults follow PaddleX's OCR pipeline YAML; ``aliases`` are PaddleX's
# ``predict()`` names (``text_det_*``); ``serving`` is the field of PaddleX 3.7.2's
# ``POST /ocr`` request.
PARAMETERS = ParameterSet.of(
    Parameter("limit_side_len", int, 64, minimum=1, serving="textDetLimitSideLen",
              aliases=("text_det_limit_side_len",),
              yaml="TextDetection.limit_side_len",
              description="Detection input size: the side limit_type names is scaled to it"),
    Parameter("limit_type", str, "min", choices=("min", "max", "resize_long"),
              serving="textDetLimitType",
              aliases=("text_det_limit_type",),
              yaml="TextDetection.limit_type",
              description="min: the short side at least limit_side_len; max: the long side "
                          "at most; resize_long: the long side exactly"),
    Parameter("max_side_limit", int, 4000, minimum=32, aliases=("text_det_max_side_limit",),
              yaml="TextDetection.max_side_limit",
              description="Detection input's longest side, at most"),
    Parameter("thresh", float, 0.3, minimum=0, maximum=1, serving="textDetThresh",
              aliases=("text_det_thresh",),
              yaml="TextDetection.thresh",
              description="Detection: a pixel is text above this probability"),
    Parameter("box_thresh", float, 0.6, minimum=0, maximum=1, serving="textDetBoxThresh",
              aliases=("text_det_box_thresh",),
              yaml="TextDetection.box_thresh",
              description="Detection: a box is kept above this mean probability"),
    Parameter("unclip_ratio", float, 1.5, minimum=0, above=True, serving="textDetUnclipRatio",
              aliases=("text_det_unclip_ratio",),
              yaml="TextDetection.unclip_ratio",
              description="Detection: how far boxes are widened (2.0 keeps word gaps better)"),
    Parameter("text_rec_score_thresh", float, 0.0, minimum=0, maximum=1,
              serving="textRecScoreThresh", aliases=("score_thresh",),
              yaml="TextRecognition.score_thresh",
              description="Recognition: lines scoring below this are dropped"),
    Parameter("use_textline_orientation", bool, True, serving="useTextlineOrientation",
              description="Turn upside-down lines (needs TextLineOrientation)"),
    Parameter("use_doc_preprocessor", bool, False,
              description="Run the doc_preprocessor stage (needs its roles; default: on "
                          "where they are built)"),
    Parameter("use_doc_orientation_classify", bool, False,
              serving="useDocOrientationClassify",
              description="Turn the page upright (needs DocOrientationClassify; default: "
                          "on where built)"),
    Parameter("use_doc_unwarping", bool, False, serving="useDocUnwarping",
              description="Flatten a curved page (needs DocUnwarping; default: on where "
                          "built)"),
    MAX_PIXELS,
    # Not PaddleX's: how recognition crops are batched (ocr_ops.rec_batches).
    Parameter("text_rec_batching", str, "paddlex", choices=ocr_ops.REC_BATCHING,
              description="paddlex: PaddleX's batches, its results; width_buckets: faster, "
                          "may differ"),
    # Not PaddleX's: PaddleX 3.7.2 gives each line its orientation batch's first angle.
    Parameter("textline_orientation_batching", str, "paddlex",
              choices=("paddlex", "per_line"),
              description="paddlex: a batch's first angle for every line, as PaddleX 3.7.2; "
                          "per_line: each line's own"),
)


# The seal OCR's parameters as seal_recognition and layout_parsing name them, and their
# PaddleX serving request fields: OCR name → (name, field).
SEAL_RENAMES = {"limit_side_len": ("seal_det_limit_side_len", "sealDetLimitSideLen"),
                "limit_type": ("seal_det_limit_type", "sealDetLimitType"),
                "thresh": ("seal_det_thresh", "sealDetThresh"),
                "box_thresh": ("seal_det_box_thresh", "sealDetBoxThresh"),
                "unclip_ratio": ("seal_det_unclip_ratio", "sealDetUnclipRatio"),
                "text_rec_score_thresh": ("seal_rec_score_thresh", "sealRecScoreThresh")}
#: OCR of seal text (``text_type: seal``): also takes seal_recognition's names.
SEAL_TEXT_PARAMETERS = PARAMETERS.with_aliases(
    {name: seal_name for name, (seal_name, _) in SEAL_RENAMES.items()})


def coerce_parameters(values: Dict, base: Optional[Dict] = None,
                      text_type: str = "general") -> Dict:
    """Validate and convert OCR parameters over ``base`` (PaddleX's defaults when absent);
    seal text also takes seal_recognition's names (``seal_det_thresh``, ...)."""
    spec = SEAL_TEXT_PARAMETERS if text_type == "seal" else PARAMETERS
    return spec.coerce(values, base, "OCR parameter")


@dataclass
class OCRSettings(GraphSettings):
    """The OCR graph's settings: the contract between the build, which writes them
    (``ensembles/ocr.py``: ``OCRPipeline.graph_settings``), and this flow, which reads them.
    Defined here, where they are read; JSON through :meth:`to_json` / :meth:`from_json`.

    Attributes:
        models: Role → engine call ``[model, input, output]``.
        params: The defaults of :data:`PARAMETERS` (the build's, PaddleX's where not set).
        det_normalize: Detection's ``{mean, std, scale}``.
        rec_batch_size: Crops per recognition batch (PaddleX's batch size, or the engine's
            limit).
        text_type: ``general``, or ``seal`` (polygons sorted by top and straightened by
            :func:`seal_ops.crop_poly`, no ``rec_boxes``).
        det_box_type: The detector's DB output: ``quad``, or ``poly`` for curved text.
        cls_resize, cls_normalize, cls_batch_size: Text-line orientation's input size
            ``[w, h]``, normalisation and batch size, where that role is built.
        doc: The doc_preprocessor stage's settings (:class:`doc_ops.DocPreprocessFlow`),
            where its roles are built.
    """

    models: Dict[str, list]
    params: Dict[str, object]
    det_normalize: Dict[str, object]
    rec_batch_size: int
    text_type: str = "general"
    det_box_type: str = "quad"
    cls_resize: Optional[List[int]] = None
    cls_normalize: Optional[Dict[str, object]] = None
    cls_batch_size: Optional[int] = None
    doc: Optional[Dict[str, object]] = None


class OCRFlow:
    """Detection → sort → crop → [orientation] → recognition (batched by width) → decode.

    Args:
        settings: :class:`OCRSettings` (or their JSON), as PaddleX's OCR pipeline.
        characters: The recognition character dict (without blank / space).
        det, rec, cls: The engines (:class:`~..common.engine.Engine`); ``cls`` may be None
            (no orientation model).
        doc: The doc_preprocessor flow (DocOrientationClassify / DocUnwarping), or None.
    """

    def __init__(self, settings, characters, det: Engine, rec: Engine,
                 cls: Optional[Engine] = None, doc: Optional[doc_ops.DocPreprocessFlow] = None):
        self.settings = settings = OCRSettings.from_json(settings)
        self.text_type = settings.text_type
        self.defaults = coerce_parameters(settings.params, None, self.text_type)
        self.decoder = ocr_ops.CTCDecoder(characters)
        self.det, self.rec, self.cls, self.doc = det, rec, cls, doc
        self.seal = settings.text_type == "seal"
        self.polygons = settings.det_box_type == "poly"
        norm = settings.det_normalize
        self.det_norm = (norm["mean"], norm["std"], float(norm["scale"]))

    @classmethod
    def from_settings(cls, settings, characters, engine: Callable[[str], Engine]) -> OCRFlow:
        """Build from a graph's settings (:class:`OCRSettings` or their JSON);
        ``engine(role)`` gives the engine of each role the graph was built with."""
        settings = OCRSettings.from_json(settings)
        engines = {role: engine(role) for role in settings.models}
        doc = None
        if settings.doc is not None:
            doc = doc_ops.DocPreprocessFlow(settings.doc, engines.get("DocOrientationClassify"),
                                            engines.get("DocUnwarping"))
        return cls(settings, characters, engines["TextDetection"], engines["TextRecognition"],
                   engines.get("TextLineOrientation"), doc)

    def parameters(self, overrides: Optional[Dict]) -> Dict:
        """Return one request's parameters, checked and merged over the build's defaults.

        Raises:
            ParameterError: a parameter is unknown or out of range, or switches on a doc
                preprocessing step this build has no model for.
        """
        params = coerce_parameters(overrides or {}, self.defaults, self.text_type)
        if params["use_doc_preprocessor"]:
            if self.doc is None:
                raise ParameterError("use_doc_preprocessor=True needs a DocPreprocessor "
                                     "(DocOrientationClassify / DocUnwarping) in the build")
            self.doc.check(params)
        return params

    def run(self, image: np.ndarray, overrides: Optional[Dict] = None,
            params: Optional[Dict] = None) -> Dict:
        """OCR one BGR image; ``params`` (already from :meth:`parameters`) skips re-checking."""
        params = params if params is not None else self.parameters(overrides)
        doc_result = None
        if params["use_doc_preprocessor"]:
            # PaddleX runs OCR on the corrected image; boxes are in its coordinates.
            image, doc_result = self.doc.run(image, params)
        h, w = image.shape[:2]
        resized, _, _ = ocr_ops.det_resize(image, params["limit_side_len"], params["limit_type"],
                                           params["max_side_limit"])
        x = ocr_ops.normalize_chw(resized, *self.det_norm)[None]
        prob = first_output(self.det, x)[0, 0]
        detect = seal_ops.db_polygons if self.polygons else ocr_ops.db_postprocess
        boxes, _ = detect(prob, h, w, params["thresh"], params["box_thresh"],
                          params["unclip_ratio"])
        if self.seal:
            boxes, crop_image = seal_ops.sort_poly_boxes(boxes), seal_ops.crop_poly
        else:
            boxes, crop_image = ocr_ops.sort_quad_boxes(boxes), ocr_ops.crop_quad
        crops, polys = [], []
        for box in boxes:
            crop = crop_image(image, box)
            if crop.size > 0:
                crops.append(crop)
                polys.append(box)
        angles = [-1] * len(crops)
        if crops and params["use_textline_orientation"] and self.cls is not None:
            angles = self._orientation(crops, params["textline_orientation_batching"])
            crops = [doc_ops.rotate_image(c, 180) if a == 1 else c
                     for c, a in zip(crops, angles)]
        texts, scores = [""] * len(crops), [0.0] * len(crops)
        for members, batch in ocr_ops.rec_batches(crops, int(self.settings.rec_batch_size),
                                                  params["text_rec_batching"]):
            for index, (text, score) in zip(members, self.decoder(first_output(self.rec, batch))):
                texts[index], scores[index] = text, score
        keep = [i for i, s in enumerate(scores) if s >= params["text_rec_score_thresh"]]
        result = self._result(polys, [texts[i] for i in keep], [scores[i] for i in keep],
                              [polys[i] for i in keep], angles)
        result.update(self.echoed_settings(params))
        if doc_result is not None:
            result["doc_preprocessor_res"] = doc_result
        return result

    def echoed_settings(self, params: Dict) -> Dict:
        """The call's settings PaddleX's OCR result repeats (``model_settings``,
        ``text_det_params``, ``text_rec_score_thresh``, ``return_word_box``)."""
        return {
            "model_settings": {"use_doc_preprocessor": params["use_doc_preprocessor"],
                               "use_textline_orientation": bool(
                                   params["use_textline_orientation"] and self.cls)},
            "text_det_params": {key: params[key] for key in (
                "limit_side_len", "limit_type", "thresh", "max_side_limit", "box_thresh",
                "unclip_ratio")},
            "text_rec_score_thresh": params["text_rec_score_thresh"],
            "return_word_box": False,
        }

    def empty_result(self) -> Dict:
        """The result for an image with no text."""
        return self._result([], [], [], [], [])

    def _result(self, dt_polys, texts, scores, rec_polys, angles) -> Dict:
        result = ocr_ops.ocr_result(dt_polys, texts, scores, rec_polys, angles)
        result["text_type"] = "seal" if self.seal else "general"
        if self.seal:  # PaddleX gives seal text no boxes
            result["rec_boxes"] = []
        return result

    def _orientation(self, crops, batching: str = "paddlex"):
        """0/1 (upright / 180°) per crop.

        PaddleX 3.7.2's classification results each carry their whole batch's class ids, and
        its OCR pipeline reads element 0: every line of a batch of ``cls_batch_size`` gets the
        batch's first line's angle. ``batching="paddlex"`` reproduces that (results equal
        PaddleX's); ``"per_line"`` keeps each line's own angle.
        """
        width, height = self.settings.cls_resize
        norm = self.settings.cls_normalize
        size = int(self.settings.cls_batch_size or 6)
        angles = []
        for start in range(0, len(crops), size):
            batch = ocr_ops.cls_preprocess(crops[start:start + size], width, height,
                                           norm["mean"], norm["std"], float(norm["scale"]))
            found = [int(a) for a in first_output(self.cls, batch).argmax(axis=-1)]
            angles += found if batching == "per_line" else [found[0]] * len(found)
        return angles
