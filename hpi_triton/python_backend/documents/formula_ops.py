"""PaddleX's formula recognition (LaTeX_OCR_rec): pre-processing, LaTeXOCRDecode, and the
formula_recognition pipeline's flow.

numpy + OpenCV + Pillow + tokenizers; shipped in the formula graph's runtime package. Engines
are callables, so the same flow runs in-process as the parity reference.

PaddleX 3.7's FormulaRecRunnerPredictor for LaTeX_OCR_rec, reproduced step by step (its
quirks included, since they decide the tokens): the crop read as RGB, MinMaxResize (only for
crops outside [min, max]: crop to the ink, pad to multiples of 32, shrink to fit), then
LatexTestTransform's BGR→gray conversion applied to the RGB array, NormalizeImage, and
LatexImageFormat (pad to multiples of 16 with 1.0, first channel, [1,1,H,W]). The export's
decoding loop runs inside the engine and returns token ids; the tokenizer (inference.yml's
``PostProcess.character_dict``, a Hugging Face tokenizers JSON) turns them into LaTeX.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np

from ..common.engine import Engine, first_output
from ..common.image_io import MAX_PIXELS, ImageError
from ..common.parameters import ParameterError, ParameterSet
from ..common.settings import GraphSettings
from ..doc_preprocessor import doc_ops

# the layout stage's parameters (use_layout_detection, layout_threshold) are formula's too
from .layout_stage import PARAMETERS, LayoutStage, built_stage

#: The formula recognizers whose pre-processing this module reproduces.
FORMULA_MODELS = ("LaTeX_OCR_rec",)
#: The pre-processing ops of their inference.yml (KeepKeys / DecodeImage carry no pixels).
KNOWN_OPS = ("DecodeImage", "MinMaxResize", "LatexTestTransform", "NormalizeImage",
             "LatexImageFormat", "KeepKeys")
#: A request's parameters: the layout switches, the doc_preprocessor's, max_pixels.
REQUEST_PARAMETERS = PARAMETERS | doc_ops.PARAMETERS | ParameterSet.of(MAX_PIXELS)


@dataclass
class FormulaSettings(GraphSettings):
    """The formula graph's settings (written by ``ensembles/formula.py``; layout_parsing
    carries its ``formula`` part).

    Attributes:
        formula: ``{model_name, preprocess, tokenizer_file, model}`` of LaTeX_OCR_rec.
        models: Role → engine call ``[model, input, output]``.
        params: The defaults of :data:`REQUEST_PARAMETERS`.
        doc: The doc_preprocessor stage's :class:`doc_ops.DocSettings`, where built.
        layout: vision_ops detection settings of LayoutDetection, where built.
    """

    formula: Dict[str, object]
    models: Dict[str, list] = field(default_factory=dict)
    params: Dict[str, object] = field(default_factory=dict)
    doc: Optional[Dict[str, object]] = None
    layout: Optional[Dict[str, object]] = None


class FormulaInputError(ImageError):
    """The image (or a formula region of it) holds nothing the formula model can read: it is
    one flat colour, too thin to shrink, its decode is empty, or the decoding loop stopped at
    its length limit. The request's fault, answered as INVALID_ARG."""


def _ops(transform_ops) -> Dict[str, Dict]:
    return {k: dict(v or {}) for op in transform_ops or [] if isinstance(op, dict)
            for k, v in op.items()}


def preprocess(bgr: np.ndarray, transform_ops) -> np.ndarray:
    """One crop (BGR HxWx3 uint8) → the engine's ``x`` [1,1,H,W] float32, as PaddleX."""
    ops = _ops(transform_ops)
    mode = ops.get("DecodeImage", {}).get("img_mode", "RGB")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if mode == "RGB" else bgr
    if "MinMaxResize" in ops:
        resize = ops["MinMaxResize"]
        try:
            image = min_max_resize(image, resize.get("min_dimensions", [32, 32]),
                                   resize.get("max_dimensions", [672, 192]))
        except ValueError as exc:  # Pillow: a side shrunk to 0 px, a paste that cannot fit
            raise FormulaInputError(f"the formula region ({bgr.shape[1]}x{bgr.shape[0]} px) "
                                    f"cannot be resized for the model ({exc}); send a crop "
                                    f"of one formula") from exc
    if "LatexTestTransform" in ops:
        # PaddleX converts "BGR" to gray on the RGB array it read: R and B weights swap.
        gray = np.squeeze(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
        image = cv2.merge([gray] * 3)
    norm = ops.get("NormalizeImage", {})
    shape = (3, 1, 1) if norm.get("order", "chw") == "chw" else (1, 1, 3)
    mean = np.array(norm.get("mean", [0.485, 0.456, 0.406])).reshape(shape).astype("float32")
    std = np.array(norm.get("std", [0.229, 0.224, 0.225])).reshape(shape).astype("float32")
    image = (image.astype("float32") * np.float32(1.0 / 255.0) - mean) / std
    h, w = image.shape[:2]
    padded = np.pad(image[:, :, 0], ((0, math.ceil(h / 16) * 16 - h),
                                     (0, math.ceil(w / 16) * 16 - w)), constant_values=(1, 1))
    return np.ascontiguousarray(padded[None, None].astype(np.float32))


def min_max_resize(image: np.ndarray, min_dims, max_dims) -> np.ndarray:
    """PaddleX MinMaxResize: a crop within [min, max] (width, height) passes unchanged; any
    other is cropped to its ink, padded white to multiples of 32, shrunk into ``max_dims``
    and padded up to ``min_dims`` (Pillow, as PaddleX)."""
    from PIL import Image

    h, w = image.shape[:2]
    if min_dims[0] <= w <= max_dims[0] and min_dims[1] <= h <= max_dims[1]:
        return image
    data = np.array(Image.fromarray(np.uint8(image)).convert("LA"))
    data = (data[..., 0] if data[..., -1].var() == 0 else 255 - data[..., -1]).astype(np.uint8)
    low, high = float(data.min()), float(data.max())
    if high == low:
        raise FormulaInputError("the formula region is one flat colour (no ink to read); "
                                "send a crop that shows the formula")
    data = (data - low) / (high - low) * 255
    if data.mean() > 128:
        gray = 255 * (data < 128).astype(np.uint8)
    else:
        gray = 255 * (data > 128).astype(np.uint8)
        data = 255 - data
    x0, y0, cw, ch = cv2.boundingRect(cv2.findNonZero(gray))
    crop = Image.fromarray(data[y0:y0 + ch, x0:x0 + cw]).convert("L")
    dims = [32 * (v // 32 + (1 if v % 32 else 0)) for v in (cw, ch)]
    img = Image.new("L", dims, 255)
    img.paste(crop, (0, 0, crop.size[0], crop.size[1]))
    ratios = [size / bound for size, bound in zip(img.size, max_dims)]
    if any(r > 1 for r in ratios):
        size = np.array(img.size) // max(ratios)
        img = img.resize(tuple(size.astype(int)), Image.BILINEAR)
    padded_size = [max(d, m) for d, m in zip(img.size, min_dims)]
    if padded_size != list(img.size):
        grown = Image.new("L", padded_size, 255)
        grown.paste(img, img.getbbox())
        img = grown
    gray_img = np.array(img)
    return np.dstack((gray_img, gray_img, gray_img))


class LatexDecoder:
    """PaddleX LaTeXOCRDecode over the model's tokenizer (Hugging Face tokenizers JSON)."""

    _TEXT = r"(\\(operatorname|mathrm|text|mathbf)\s?\*? {.*?})"
    _LETTER, _NOLETTER = r"[a-zA-Z]", r"[\W_^\d]"
    # PaddleX's three spacing rules: non-letter/non-letter, non-letter/letter, letter/non-letter.
    _SPACES = (r"(?!\\ )(" + _NOLETTER + r")\s+?(" + _NOLETTER + ")",
               r"(?!\\ )(" + _NOLETTER + r")\s+?(" + _LETTER + ")",
               r"(" + _LETTER + r")\s+?(" + _NOLETTER + ")")

    def __init__(self, tokenizer_json: str):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.eos = self.tokenizer.token_to_id("[EOS]")

    def decode(self, tokens: np.ndarray) -> str:
        """One row of token ids → the LaTeX string (PaddleX's clean-up included)."""
        text = self.tokenizer.decode([int(t) for t in tokens])
        text = ("".join(text.split(" ")).replace("Ġ", " ").replace("[EOS]", "")
                .replace("[BOS]", "").replace("[PAD]", "").strip())
        return self.post_process(text)

    def post_process(self, s: str) -> str:
        """PaddleX's spacing clean-up: ``\\text {a b}`` → ``\\text{ab}``, spaces between
        non-letters (and a non-letter and a letter) dropped."""
        names = [x[0].replace(" ", "") for x in re.findall(self._TEXT, s)]
        s = re.sub(self._TEXT, lambda match: str(names.pop(0)), s)
        news = s
        while True:
            s = news
            for rule in self._SPACES:
                news = re.sub(rule, r"\1\2", news)
            if news == s:
                break
        return s


class FormulaFlow:
    """[doc_preprocessor] → formula regions (layout detection's "formula" boxes, or the whole
    image) → LaTeX_OCR_rec per region, one at a time (PaddleX runs it at batch 1).

    Args:
        settings: :class:`FormulaSettings` (or their JSON).
        recognize: The formula engine (x [1,1,H,W] → token ids [1,L]).
        decoder: The model's :class:`LatexDecoder`.
        layout: The layout stage, or None.
        doc: The doc_preprocessor flow, or None.
    """

    def __init__(self, settings, recognize: Engine, decoder: LatexDecoder,
                 layout: Optional[LayoutStage] = None, doc=None):
        self.settings = settings = FormulaSettings.from_json(settings)
        self.recognize, self.decoder = recognize, decoder
        self.layout, self.doc = layout, doc
        self.model_name = settings.formula["model_name"]

    @classmethod
    def from_settings(cls, settings, tokenizer_text: str,
                      engine: Callable[[list], Engine]) -> FormulaFlow:
        """The flow of a graph's settings (:class:`FormulaSettings` or their JSON):
        ``engine(spec)`` gives the engine of an engine-call spec ([name, inputs, outputs]);
        the layout detector and the doc flow where built."""
        settings = FormulaSettings.from_json(settings)
        models = settings.models
        doc = None
        if settings.doc is not None:
            engines = {role: engine(models[role])
                       for role in ("DocOrientationClassify", "DocUnwarping") if role in models}
            doc = doc_ops.DocPreprocessFlow(settings.doc, engines.get("DocOrientationClassify"),
                                            engines.get("DocUnwarping"))
        layout = built_stage(LayoutStage, settings.layout, engine)
        return cls(settings, engine(settings.formula["model"]), LatexDecoder(tokenizer_text),
                   layout, doc)

    def parameters(self, overrides: Optional[Dict]) -> Dict:
        """The request's parameters over the build's defaults, checked against the models
        built. As PaddleX's get_model_settings: a request naming either doc switch runs the
        doc_preprocessor only if one it names is True; otherwise the build's
        ``use_doc_preprocessor`` decides."""
        params = REQUEST_PARAMETERS.coerce(overrides, self.settings.params)
        named = [k for k in (overrides or {}) if k in doc_ops.PARAMETERS]
        if named:
            params["use_doc_preprocessor"] = any(params[k] for k in named)
        if params["use_layout_detection"] and self.layout is None:
            raise ParameterError(
                "use_layout_detection=True needs a LayoutDetection model in the build")
        if params.get("use_doc_preprocessor"):
            if self.doc is None:
                raise ParameterError(
                    "use_doc_orientation_classify / use_doc_unwarping need the "
                    "doc_preprocessor models (DocOrientationClassify / DocUnwarping) in the "
                    "build")
            self.doc.check(params)
        return params

    def run(self, image: np.ndarray, params: Dict) -> Dict:
        """Recognize the formulas of one image (BGR uint8) as PaddleX's formula_recognition.

        Raises:
            FormulaInputError: without layout detection, the image decodes to nothing or
                hits the decoding limit (with layout detection such regions stay in the
                result, PaddleX's way, and are named in ``warnings``).
        """
        use_doc = bool(params.get("use_doc_preprocessor"))
        out = {"model_settings": {"use_doc_preprocessor": use_doc,
                                  "use_layout_detection": params["use_layout_detection"]}}
        if use_doc:
            image, out["doc_preprocessor_res"] = self.doc.run(image, params)
        warnings: List[str] = []
        if not params["use_layout_detection"]:
            formula, problem = self.read(image)
            if problem:
                raise FormulaInputError(f"{self.model_name}: the image {problem}")
            out["formula_res_list"] = [{"rec_formula": formula, "formula_region_id": 1}]
            return out
        layout = self.layout.detect(image, params["layout_threshold"])
        out["layout_det_res"] = layout
        # PaddleX's formula_recognition JSON writes dt_polys as a one-element tuple of the box.
        out["formula_res_list"] = self.regions(image, layout["boxes"], warnings,
                                               wrap_polys=True)
        if warnings:
            out["warnings"] = warnings
        return out

    def regions(self, image: np.ndarray, boxes, warnings: List[str],
                wrap_polys: bool = False) -> List[Dict]:
        """formula_res_list for the layout ``boxes`` labelled "formula" (crops as PaddleX's
        CropByBoxes: int coordinates), numbered from 1; a region that decodes to nothing or
        hits the limit keeps its text and adds a line to ``warnings``."""
        results = []
        for box in boxes:
            if box["label"].lower() != "formula":
                continue
            region = len(results) + 1
            x1, y1, x2, y2 = (int(v) for v in box["coordinate"])
            crop = image[y1:y2, x1:x2]
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                formula, problem = "", "is empty (under one pixel)"
            else:
                formula, problem = self.read(np.ascontiguousarray(crop))
            if problem:
                warnings.append(f"formula region {region} {list(box['coordinate'])}: "
                                f"{self.model_name}: it {problem}")
            polys = list(box["coordinate"])
            results.append({"rec_formula": formula, "formula_region_id": region,
                            "dt_polys": [polys] if wrap_polys else polys})
        return results

    def read(self, crop: np.ndarray):
        """(LaTeX, problem or None) of one crop. Tokens after the first [EOS] are dropped:
        at batch 1, where PaddleX runs, the loop stops there; a batch of several keeps
        decoding the finished rows."""
        try:
            x = preprocess(crop, self.settings.formula["preprocess"])
        except FormulaInputError as exc:
            return "", f"cannot be read: {exc}"
        tokens = first_output(self.recognize, x).reshape(-1)
        # The build refuses a tokenizer without [EOS], so eos is a token id here.
        hits = np.flatnonzero(tokens == self.decoder.eos)
        if hits.size:
            tokens = tokens[:hits[0] + 1]
        formula = self.decoder.decode(tokens)
        if not hits.size:
            return formula, (f"reached the decoding limit ({tokens.size} tokens) before "
                             f"[EOS]: the region is larger than one formula or not a formula; "
                             f"crop it to one formula, or turn on use_layout_detection")
        if not formula:
            return formula, ("decodes to no LaTeX (only [EOS]): it shows no formula this "
                             "model can read; send a crop of a formula, or turn on "
                             "use_layout_detection to find them")
        return formula, None


def tokenizer_json(post_process: Dict) -> str:
    """The tokenizer JSON of a LaTeXOCRDecode ``PostProcess``: its ``character_dict``
    mapping serialised, as PaddleX's LaTeXOCRDecode does."""
    return json.dumps(post_process.get("character_dict"))
