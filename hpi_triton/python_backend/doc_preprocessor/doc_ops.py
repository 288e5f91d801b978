"""PaddleX's doc_preprocessor: 4-way document orientation, then UVDoc unwarping.

numpy + OpenCV only; shipped in the runtime package of the doc_preprocessor and OCR graphs.
Engines are callables, so the same flow runs in-process as the parity reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..common.engine import Engine, first_output
from ..common.image_io import normalize_chw
from ..common.parameters import Parameter, ParameterError, ParameterSet
from ..common.settings import GraphSettings
from ..vision import vision_ops

# Defaults are set at build time from the roles present.
PARAMETERS = ParameterSet.of(
    Parameter("use_doc_orientation_classify", bool, serving="useDocOrientationClassify",
              description="Turn the page upright (needs DocOrientationClassify; default: on "
                          "where built)"),
    Parameter("use_doc_unwarping", bool, serving="useDocUnwarping",
              description="Flatten a curved page (needs DocUnwarping; default: on where "
                          "built)"))


def rotate_image(image: np.ndarray, angle: float) -> np.ndarray:
    """PaddleX rotate_image: turn counter-clockwise by ``angle`` degrees about the centre,
    growing the canvas to hold the result (cubic interpolation)."""
    if angle < 0 or angle >= 360:
        raise ValueError(f"angle {angle} is outside [0, 360)")
    if angle < 1e-7:
        return image
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(h * sin + w * cos), int(h * cos + w * sin)
    matrix[0, 2] += (new_w - w) / 2
    matrix[1, 2] += (new_h - h) / 2
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_CUBIC)


@dataclass
class DocSettings(GraphSettings):
    """The doc_preprocessor stage's settings (built by ``ensembles/doc.py:doc_settings``).

    Attributes:
        orientation_preprocess: The orientation classifier's transform_ops (None without one).
        orientation_labels: Its labels, angles as strings (``['0', '90', '180', '270']``).
    """

    orientation_preprocess: Optional[List[Dict]] = None
    orientation_labels: Optional[List[str]] = None


@dataclass
class DocGraphSettings(GraphSettings):
    """The doc_preprocessor graph's settings (written by ``ensembles/doc.py``).

    Attributes:
        models: Role → engine call ([model, input, output]) of the roles built.
        doc: The flow's :class:`DocSettings` (JSON).
        params: The build's defaults of the graph's request parameters.
    """

    models: Dict[str, list]
    doc: Dict[str, object]
    params: Dict[str, object]


class DocPreprocessFlow:
    """Orientation (a PaddleX image classifier whose labels are angles) → rotate back →
    unwarping (UVDoc export: BGR/255 CHW in, the unwarped image in [0, 1] out).

    Args:
        settings: :class:`DocSettings` (or their JSON).
        orientation: The classifier's engine (x [1,3,H,W] → probs [1,C]) or None.
        unwarping: The unwarping engine (x [1,3,H,W] → image [1,3,H,W]) or None.
    """

    def __init__(self, settings, orientation: Optional[Engine] = None,
                 unwarping: Optional[Engine] = None):
        self.settings = DocSettings.from_json(settings)
        self.orientation, self.unwarping = orientation, unwarping

    def check(self, params: Dict) -> None:
        """Refuse parameters that turn on a step whose model this build lacks.

        Raises:
            ParameterError: ``use_doc_orientation_classify`` or ``use_doc_unwarping`` is on without
                its model.
        """
        for key, engine, role in (("use_doc_orientation_classify", self.orientation,
                                   "DocOrientationClassify"),
                                  ("use_doc_unwarping", self.unwarping, "DocUnwarping")):
            if params.get(key) and engine is None:
                raise ParameterError(f"{key}=True needs a {role} model in the build")

    def run(self, bgr: np.ndarray, params: Dict):
        """Returns (output image BGR uint8, {angle, model_settings}) for one image."""
        self.check(params)
        settings = {k: bool(params.get(k)) for k in PARAMETERS}
        angle, image = -1, bgr
        if settings["use_doc_orientation_classify"]:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            x = vision_ops.classification_preprocess(rgb, self.settings.orientation_preprocess)
            probs = first_output(self.orientation, x[None]).reshape(-1)
            labels = self.settings.orientation_labels
            angle = int(labels[int(probs.argmax())])
            image = rotate_image(bgr, angle)
        if settings["use_doc_unwarping"]:
            # PaddleX: Normalize(mean=0, std=1, scale=1/255) on BGR, then CHW.
            x = normalize_chw(image, 0.0, 1.0, 1 / 255.0)[None]
            out = first_output(self.unwarping, x)[0]
            # PaddleX DocTrPostProcess: HWC, x255, to uint8 (kept in BGR order here).
            image = np.ascontiguousarray(
                (out.transpose(1, 2, 0) * 255.0).clip(0, 255).astype(np.uint8))
        return image, {"angle": angle, "model_settings": settings}
