"""Pre- and post-processing of the vision pipelines, driven by each model's inference.yml.

Self-contained (numpy + OpenCV): copied next to the vision graph's ``model.py``. Semantics
follow PaddleX: images are read as RGB; ResizeImage (resize_short or size), CropImage (center),
NormalizeImage (scale, mean, std), ToCHWImage; Topk with label_list.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import cv2
import numpy as np

_INTERPOLATION = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR,
                  "CUBIC": cv2.INTER_CUBIC, "BICUBIC": cv2.INTER_CUBIC,
                  "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}


class PreprocessError(ValueError):
    """The image does not fit the model's pre-processing (e.g. smaller than the crop)."""


def _scale(value) -> float:
    if isinstance(value, str):
        numerator, _, denominator = value.partition("/")
        return float(numerator) / float(denominator or 1)
    return float(value)


def classification_preprocess(rgb: np.ndarray, ops: List[Dict]) -> np.ndarray:
    """Apply PaddleX classification transform_ops to one RGB HWC uint8 image → CHW float32."""
    image = rgb
    chw = False
    for op in ops:
        (name, args), = op.items()
        args = args or {}
        if name == "ResizeImage":
            interp = _INTERPOLATION[str(args.get("interpolation", "LINEAR")).upper()]
            h, w = image.shape[:2]
            if args.get("resize_short"):
                scale = args["resize_short"] / min(h, w)
                size = (round(w * scale), round(h * scale))
            else:
                size = args["size"]
                size = (size, size) if isinstance(size, int) else tuple(size)
            if size != (w, h):
                image = cv2.resize(image, size, interpolation=interp)
        elif name == "CropImage":
            size = args.get("size", 224)
            cw, ch = (size, size) if isinstance(size, int) else size
            h, w = image.shape[:2]
            if w < cw or h < ch:
                raise PreprocessError(f"image ({w}x{h}) is smaller than the crop ({cw}x{ch})")
            x1, y1 = max(0, (w - cw) // 2), max(0, (h - ch) // 2)
            image = image[y1:y1 + ch, x1:x1 + cw]
        elif name == "NormalizeImage":
            scale = _scale(args.get("scale", 1 / 255.0))
            mean = np.asarray(args.get("mean", [0.485, 0.456, 0.406]), np.float32)
            std = np.asarray(args.get("std", [0.229, 0.224, 0.225]), np.float32)
            image = image.astype(np.float32) * (scale / std) - mean / std
        elif name == "ToCHWImage":
            image = image.transpose(2, 0, 1)
            chw = True
        # Other ops (DecodeImage, KeepKeys, ...) are training-time or already done.
    if not chw:
        image = image.transpose(2, 0, 1)
    return np.ascontiguousarray(image, dtype=np.float32)


def topk(probs: np.ndarray, k: int, labels: Sequence[str] | None) -> Dict:
    """PaddleX Topk for one image: class_ids, scores (5 decimals), label_names."""
    k = max(1, min(int(k), probs.shape[-1]))
    index = probs.argsort()[-k:][::-1].astype(int)
    names = [str(labels[i]) if labels and i < len(labels) else str(int(i)) for i in index]
    return {"class_ids": index.tolist(),
            "scores": [float(s) for s in np.around(probs[index], decimals=5)],
            "label_names": names}


# --- parameters and tasks --------------------------------------------------------------------

class ParameterError(ValueError):
    """A request parameter has an unknown name or a value of the wrong type or range."""


PARAMETERS = {
    "image_classification": {"topk": (int, lambda v: v >= 1)},
}
COMMON = {"max_pixels": (int, lambda v: v > 0)}


def coerce_parameters(values: Dict, defaults: Dict) -> Dict:
    """Defaults (set at build time) updated with checked request parameters."""
    known = {**PARAMETERS.get(defaults.get("task", ""), {}), **COMMON}
    merged = dict(defaults)
    for name, value in (values or {}).items():
        if name not in known:
            raise ParameterError(f"unknown parameter {name!r}; valid: {sorted(known)}")
        kind, check = known[name]
        try:
            converted = kind(value)
        except (TypeError, ValueError):
            raise ParameterError(f"parameter {name!r} is {value!r}; expected "
                                 f"{kind.__name__}") from None
        if not check(converted):
            raise ParameterError(f"parameter {name!r} = {converted!r} is out of range")
        merged[name] = converted
    return merged


def run_task(settings: Dict, params: Dict, rgb: np.ndarray, engine) -> Dict:
    """Pre-process, call ``engine(*inputs) -> outputs``, post-process, for one RGB image."""
    task = settings["task"]
    if task == "image_classification":
        x = classification_preprocess(rgb, settings["preprocess"])[None]
        (probs,) = engine(x)[:1]
        return topk(np.asarray(probs)[0], params["topk"], settings.get("labels"))
    raise ValueError(f"task {task!r} is not supported by this graph")
