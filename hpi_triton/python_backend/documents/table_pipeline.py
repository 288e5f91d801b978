"""PaddleX's table_recognition orchestration, independent of where the engines run.

[doc_preprocessor] → OCR on the whole page → tables (layout detection's "table" boxes, or the
whole page as one table) → SLANet(_plus) structure per table → OCR boxes matched into cells.
Shipped in the table graph's runtime package; in-process (the parity
reference) the engines are runners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from ..common.parameters import Parameter, ParameterError, ParameterSet
from ..common.settings import GraphSettings
from ..ocr.ocr_pipeline import PARAMETERS as OCR_PARAMETERS
from ..ocr.ocr_pipeline import SEAL_RENAMES, OCRFlow
from ..vision import vision_ops
from . import table_ops

# The table pipeline's own parameters; everything else is the OCR sub-pipeline's.
PARAMETERS = ParameterSet.of(
    Parameter("use_layout_detection", bool, serving="useLayoutDetection",
              description="Find tables with LayoutDetection (default: on where built)"),
    Parameter("layout_threshold", float, 0.5, minimum=0, maximum=1, serving="layoutThreshold",
              description="LayoutDetection: regions are kept above this score"))
# layout_parsing's seal and formula switches (defaults: on where built).
LAYOUT_PARSING_SWITCHES = ParameterSet.of(
    Parameter("use_seal_recognition", bool, serving="useSealRecognition",
              description="Read seal regions (needs SealTextDetection)"),
    Parameter("use_formula_recognition", bool, serving="useFormulaRecognition",
              description="Read formula regions (needs FormulaRecognition)"))
# layout_parsing's seal OCR parameters (seal_det_*, seal_rec_score_thresh).
SEAL_PARAMETERS = OCR_PARAMETERS.prefixed(SEAL_RENAMES)


@dataclass
class TableSettings(GraphSettings):
    """The settings of the table_recognition, seal_recognition and layout_parsing graphs
    (written by ``ensembles/table.py``).

    Attributes:
        task: Which of the three flows the graph runs (its pipeline's name).
        ocr: The general (or, for seal_recognition, seal) OCR's :class:`OCRSettings`.
        table_params: The defaults of :data:`PARAMETERS` (and layout_parsing's switches).
        structure: SLANet decoding settings and its engine call, where built.
        layout: vision_ops detection settings of LayoutDetection, where built.
        seal_ocr: layout_parsing's seal OCR settings, where built.
        formula: layout_parsing's :class:`formula_ops.FormulaSettings` ``formula`` part,
            where built.
    """

    task: str
    ocr: Dict[str, object]
    table_params: Dict[str, object] = field(default_factory=dict)
    structure: Optional[Dict[str, object]] = None
    layout: Optional[Dict[str, object]] = None
    seal_ocr: Optional[Dict[str, object]] = None
    formula: Optional[Dict[str, object]] = None


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
        self.settings = settings = TableSettings.from_json(settings)
        self.ocr, self.structure, self.layout = ocr, structure, layout
        self.defaults = settings.table_params

    def parameters(self, overrides: Optional[Dict]):
        """(table parameters, OCR parameters) from one request's parameters."""
        overrides = dict(overrides or {})
        own = {k: overrides.pop(k) for k in list(overrides) if k in PARAMETERS}
        table = PARAMETERS.coerce(own, self.defaults)
        if table["use_layout_detection"] and self.layout is None:
            raise ParameterError(
                "use_layout_detection=True needs a LayoutDetection model in the build")
        return table, self.ocr.parameters(overrides)

    def run(self, image: np.ndarray, table: Dict, ocr_params: Dict) -> Dict:
        """Recognize the tables of one page as PaddleX's table_recognition does.

        Args:
            image: The page, BGR HxWx3 uint8.
            table: The table parameters from :meth:`parameters`.
            ocr_params: The OCR parameters from :meth:`parameters`.

        Returns:
            ``overall_ocr_res``, ``table_res_list`` and ``model_settings``, plus
            ``doc_preprocessor_res`` / ``layout_det_res`` when those steps ran.
        """
        image, doc_result = self.preprocess(image, ocr_params)
        ocr = self.ocr.run(image, params={**ocr_params, "use_doc_preprocessor": False})
        h, w = image.shape[:2]
        layout_result = None
        if table["use_layout_detection"]:
            layout_result = self.detect_layout(image, table["layout_threshold"])
            tables = self.tables(image, [b["coordinate"] for b in layout_result["boxes"]
                                         if b["label"].lower() == "table"], ocr)
        else:
            tables = self.tables(image, [[0, 0, w - 1, h - 1]], ocr, whole_page=True)
        out = {"model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                  "use_layout_detection": table["use_layout_detection"],
                                  "use_ocr_model": True},
               "overall_ocr_res": ocr, "table_res_list": tables}
        if doc_result is not None:
            out["doc_preprocessor_res"] = doc_result
        if layout_result is not None:
            out["layout_det_res"] = layout_result
        return out

    def preprocess(self, image: np.ndarray, ocr_params: Dict):
        """(page, doc_preprocessor_res or None): the doc_preprocessor flow when switched on."""
        if ocr_params["use_doc_preprocessor"]:
            return self.ocr.doc.run(image, ocr_params)
        return image, None

    def detect_layout(self, image: np.ndarray, threshold: float) -> Dict:
        """Run the layout detector on ``image`` (BGR) at score ``threshold``; return its result."""
        return vision_ops.detect_layout(self.settings.layout, image, threshold, self.layout)

    def tables(self, image: np.ndarray, boxes, ocr: Dict, whole_page: bool = False):
        """table_res_list for the table ``boxes`` (page coordinates) of ``image``.

        ``whole_page``: the one box is the page (no layout detection): as PaddleX, the
        structure model reads the whole image, not a crop of the box, which is
        ``[0, 0, w - 1, h - 1]`` and would drop the last row and column."""
        h, w = image.shape[:2]
        out = []
        for region_id, box in enumerate(boxes, start=1):
            crop = image if whole_page else _region(image, box)
            if crop is None:
                continue
            result = table_ops.table_result(self.recognize_structure(crop), ocr, box, (h, w))
            result["table_region_id"] = region_id
            out.append(result)
        return out

    def seals(self, image: np.ndarray, boxes, seal: OCRFlow, params: Dict):
        """seal_res_list: seal OCR of each box's crop (polygons in crop coordinates, as
        PaddleX), numbered by ``seal_region_id`` from 1."""
        out = []
        for region_id, box in enumerate(boxes, start=1):
            crop = _region(image, box)
            if crop is None:
                result = seal.empty_result()
            else:
                result = seal.run(np.ascontiguousarray(crop), params=params)
            result["seal_region_id"] = region_id
            out.append(result)
        return out

    def recognize_structure(self, crop: np.ndarray) -> Dict:
        """Run the structure model on one table crop; return its decoded tokens and cell boxes."""
        spec = self.settings.structure
        x = table_ops.structure_preprocess(crop, spec["max_len"])
        boxes, probs = self.structure(x)
        return table_ops.structure_decode(np.asarray(boxes)[0], np.asarray(probs)[0],
                                          spec["characters"], (crop.shape[1], crop.shape[0]),
                                          spec["max_len"], spec["canvas_boxes"])


def _region(image: np.ndarray, box):
    """The crop of a layout box [x1, y1, x2, y2] (page coordinates), None when under 2 px."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = image[max(y1, 0):y2, max(x1, 0):x2]
    return None if crop.shape[0] < 2 or crop.shape[1] < 2 else crop


class SealFlow(TableFlow):
    """PaddleX's seal_recognition: [doc_preprocessor] → layout detection's "seal" boxes (or
    the whole image as one seal) → seal OCR (``self.ocr``, text_type seal) per seal."""

    def run(self, image: np.ndarray, table: Dict, ocr_params: Dict) -> Dict:
        """Recognize the seals of one image as PaddleX's seal_recognition does.

        Without layout detection the whole image is read as one seal.
        """
        image, doc_result = self.preprocess(image, ocr_params)
        inner = {**ocr_params, "use_doc_preprocessor": False}
        out = {"model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                  "use_layout_detection": table["use_layout_detection"]},
               "doc_preprocessor_res": doc_result or {}, "layout_det_res": {}}
        if table["use_layout_detection"]:
            layout = self.detect_layout(image, table["layout_threshold"])
            out["layout_det_res"] = layout
            boxes = [b["coordinate"] for b in layout["boxes"] if b["label"].lower() == "seal"]
            out["seal_res_list"] = self.seals(image, boxes, self.ocr, inner)
        else:
            whole = self.ocr.run(image, params=inner)
            whole["seal_region_id"] = 1
            out["seal_res_list"] = [whole]
        return out


class LayoutParsingFlow(TableFlow):
    """PaddleX's layout_parsing (v1, the visual stage of PP-ChatOCRv3-doc): doc_preprocessor →
    layout detection → OCR on the page → tables (when a structure model is built) → seals
    (when a seal detector is built) → one block per layout region (OCR text, table HTML, seal
    texts, LaTeX when a formula model is built) and ``other_text`` blocks for OCR lines
    outside every region, in PaddleX's reading order."""

    def __init__(self, settings: Dict, ocr: OCRFlow, structure: Callable,
                 layout: Optional[Callable] = None, seal: Optional[OCRFlow] = None,
                 formula=None):
        super().__init__(settings, ocr, structure, layout)
        self.seal, self.formula = seal, formula

    def parameters(self, overrides: Optional[Dict]):
        """(layout parameters with ``use_seal_recognition``, ``use_formula_recognition`` and
        ``seal`` (the seal OCR's parameters), general OCR parameters)."""
        overrides = dict(overrides or {})
        seal_given = {k: overrides.pop(k) for k in SEAL_PARAMETERS if k in overrides}
        switch = LAYOUT_PARSING_SWITCHES.coerce(
            {k: overrides.pop(k) for k in list(overrides) if k in LAYOUT_PARSING_SWITCHES},
            {"use_seal_recognition": self.defaults.get("use_seal_recognition",
                                                       self.seal is not None),
             "use_formula_recognition": self.defaults.get("use_formula_recognition",
                                                          self.formula is not None)})
        table, ocr = super().parameters({"use_layout_detection": True, **overrides})
        if not table["use_layout_detection"]:
            raise ParameterError("layout_parsing always runs layout detection")
        if switch["use_seal_recognition"] and self.seal is None:
            raise ParameterError(
                "use_seal_recognition=True needs a SealTextDetection model in the build")
        if switch["use_formula_recognition"] and self.formula is None:
            raise ParameterError(
                "use_formula_recognition=True needs a FormulaRecognition model in the build")
        table.update(switch)
        table["seal"] = self.seal.parameters(seal_given) if self.seal is not None else None
        return table, ocr

    def run(self, image: np.ndarray, table: Dict, ocr_params: Dict) -> Dict:
        """Parse the layout of one page as PaddleX's layout_parsing does.

        Layout detection always runs; tables only when a structure model is built, seals only with
        ``use_seal_recognition``, formulas only with ``use_formula_recognition``.
        """
        image, doc_result = self.preprocess(image, ocr_params)
        inner = {**ocr_params, "use_doc_preprocessor": False}
        layout = self.detect_layout(image, table["layout_threshold"])
        ocr = self.ocr.run(image, params=inner)
        use_tables = self.structure is not None
        tables = self.tables(image, [b["coordinate"] for b in layout["boxes"]
                                     if b["label"].lower() == "table"], ocr) if use_tables else []
        seals = []
        if table["use_seal_recognition"]:
            seals = self.seals(image, [b["coordinate"] for b in layout["boxes"]
                                       if b["label"].lower() == "seal"], self.seal,
                               {**table["seal"], "use_doc_preprocessor": False})
        warnings = []
        formulas = (self.formula.regions(image, layout["boxes"], warnings)
                    if table["use_formula_recognition"] else [])
        blocks = self.blocks(image, layout, ocr, tables, seals, inner, formulas)
        extra = {"warnings": warnings} if warnings else {}
        return {**extra,
                "model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                   "use_seal_recognition": table["use_seal_recognition"],
                                   "use_table_recognition": use_tables,
                                   "use_formula_recognition": table["use_formula_recognition"]},
                "doc_preprocessor_res": doc_result or {"angle": -1, "model_settings": {
                    "use_doc_orientation_classify": False, "use_doc_unwarping": False}},
                "layout_det_res": layout, "overall_ocr_res": ocr, "table_res_list": tables,
                "seal_res_list": seals, "formula_res_list": formulas,
                "parsing_res_list": blocks}

    def blocks(self, image, layout, ocr, tables, seals, ocr_params, formulas=()):
        """Return ``parsing_res_list``: a block per layout region and per OCR line outside them all.

        A region's content is its table's HTML, its seal's texts, its formula's LaTeX (empty
        without formula recognition), or the OCR text inside it (a line shared by several
        regions is read again per region, the rest of the page white). Blocks come in
        PaddleX's reading order.
        """
        blocks, owners = [], {}
        # The k-th table region is table_region_id k (a region too small to crop has none).
        by_region = {t["table_region_id"]: t for t in tables}
        table_regions = 0
        seal_texts = iter([", ".join(s["rec_texts"]) for s in seals])
        formula_texts = iter([f["rec_formula"] for f in formulas])
        for index, box in enumerate(layout["boxes"]):
            label = box["label"].lower()
            block = {"block_bbox": box["coordinate"], "block_label": label, "block_content": ""}
            if label == "table":
                table_regions += 1
                found = by_region.get(table_regions)
                block["block_content"] = found["pred_html"] if found else ""
            elif label == "seal":  # PaddleX: the seal's texts joined by ", "
                block["block_content"] = next(seal_texts, "")
            elif label == "formula":
                block["block_content"] = next(formula_texts, "")
            else:
                inside, matched = table_ops.sub_region_ocr(ocr, [box["coordinate"]])
                for i in matched:
                    owners.setdefault(i, []).append(index)
                block["block_content"] = "\n".join(inside["rec_texts"])
            blocks.append(block)
        # A line shared by several regions: as PaddleX, OCR each region alone (the rest white).
        for shared in {tuple(v) for v in owners.values() if len(v) > 1}:
            for index in shared:
                x1, y1, x2, y2 = (int(v) for v in blocks[index]["block_bbox"])
                white = np.full_like(image, 255)
                white[y1:y2, x1:x2] = image[y1:y2, x1:x2]
                again = self.ocr.run(white, params=ocr_params)
                blocks[index]["block_content"] = "\n".join(again["rec_texts"])
        outside, _ = table_ops.sub_region_ocr(ocr, [b["coordinate"] for b in layout["boxes"]],
                                              within=False)
        for rec_box, text in zip(outside["rec_boxes"], outside["rec_texts"]):
            blocks.append({"block_bbox": list(rec_box), "block_label": "other_text",
                           "block_content": text})
        return sorted_layout_boxes(blocks, image.shape[1])


def sorted_layout_boxes(blocks, width):
    """PaddleX's reading order: by (top, left), single-column blocks in page order, and runs
    of left-column / right-column blocks each read top to bottom (left column first)."""
    if len(blocks) == 1:
        return blocks
    ordered = sorted(blocks, key=lambda b: (b["block_bbox"][1], b["block_bbox"][0]))
    out, left, right = [], [], []
    for block in ordered:
        x1, _, x2, _ = block["block_bbox"]
        if x1 < width / 4 and x2 < 3 * width / 5:
            left.append(block)
        elif x1 > 2 * width / 5:
            right.append(block)
        else:
            out += left + right + [block]
            left, right = [], []
    return out + sorted(left, key=lambda b: b["block_bbox"][1]) + sorted(
        right, key=lambda b: b["block_bbox"][1])
