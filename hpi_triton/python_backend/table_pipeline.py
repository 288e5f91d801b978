"""PaddleX's table_recognition orchestration, independent of where the engines run.

[doc_preprocessor] → OCR on the whole page → tables (layout detection's "table" boxes, or the
whole page as one table) → SLANet(_plus) structure per table → OCR boxes matched into cells.
Copied into repositories beside the table graph's ``model.py``; in-process (the parity
reference) the engines are runners.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import cv2
import numpy as np

try:  # inside the hpi_triton package
    from . import request_params, table_ops, vision_ops
    from .ocr_pipeline import OCRFlow
except ImportError:  # copied into a repository beside model.py
    import request_params
    import table_ops
    import vision_ops
    from ocr_pipeline import OCRFlow

# The table pipeline's own switches; everything else is the OCR sub-pipeline's.
PARAMETERS = {"use_layout_detection": (bool, lambda v: True),
              "layout_threshold": (float, lambda v: 0.0 <= v <= 1.0)}


class TableFlow:
    """Args:
        settings: ``structure`` ({characters, max_len, canvas_boxes}), ``layout`` (the
            detection settings of vision_ops, or absent) and ``table_params`` (defaults of
            :data:`PARAMETERS`).
        ocr: The OCR flow (with the doc_preprocessor flow when built).
        structure: ``f(x [1,3,L,L]) -> [boxes, probs]``.
        layout: ``f(*feeds) -> outputs`` of the layout detector, or None.
    """

    def __init__(self, settings: Dict, ocr: OCRFlow, structure: Callable,
                 layout: Optional[Callable] = None):
        self.settings, self.ocr, self.structure, self.layout = settings, ocr, structure, layout
        self.defaults = settings["table_params"]

    def parameters(self, overrides: Optional[Dict]):
        """(table parameters, OCR parameters) from one request's parameters."""
        overrides = dict(overrides or {})
        own = {k: overrides.pop(k) for k in list(overrides) if k in PARAMETERS}
        table = request_params.coerce(own, PARAMETERS, self.defaults)
        if table["use_layout_detection"] and self.layout is None:
            raise request_params.ParameterError(
                "use_layout_detection=True needs a LayoutDetection model in the build")
        return table, self.ocr.parameters(overrides)

    def run(self, image: np.ndarray, table: Dict, ocr_params: Dict) -> Dict:
        doc_result = None
        if ocr_params["use_doc_preprocessor"]:
            image, doc_result = self.ocr.doc.run(image, ocr_params)
        ocr = self.ocr.run(image, params={**ocr_params, "use_doc_preprocessor": False})
        h, w = image.shape[:2]
        regions, layout_result = [], None
        if table["use_layout_detection"]:
            settings = self.settings["layout"]
            rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            layout_result = vision_ops.run_task(
                settings, {**settings["params"], "threshold": table["layout_threshold"]}, rgb,
                self.layout)
            for box in layout_result["boxes"]:
                if box["label"].lower() == "table":
                    x1, y1, x2, y2 = (int(v) for v in box["coordinate"])
                    regions.append((box["coordinate"], image[y1:y2, x1:x2]))
        else:
            regions.append(([0, 0, w - 1, h - 1], image))
        tables = []
        for region_id, (box, crop) in enumerate(regions, start=1):
            if crop.shape[0] < 2 or crop.shape[1] < 2:
                continue
            structure = self.recognize_structure(crop)
            result = table_ops.table_result(structure, ocr, box, (h, w))
            result["table_region_id"] = region_id
            tables.append(result)
        out = {"model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                  "use_layout_detection": table["use_layout_detection"],
                                  "use_ocr_model": True},
               "overall_ocr_res": ocr, "table_res_list": tables}
        if doc_result is not None:
            out["doc_preprocessor_res"] = doc_result
        if layout_result is not None:
            out["layout_det_res"] = layout_result
        return out

    def recognize_structure(self, crop: np.ndarray) -> Dict:
        spec = self.settings["structure"]
        x = table_ops.structure_preprocess(crop, spec["max_len"])
        boxes, probs = self.structure(x)
        return table_ops.structure_decode(np.asarray(boxes)[0], np.asarray(probs)[0],
                                          spec["characters"], (crop.shape[1], crop.shape[0]),
                                          spec["max_len"], spec["canvas_boxes"])
