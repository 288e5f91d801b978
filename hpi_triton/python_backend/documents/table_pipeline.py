"""PaddleX's document flows — table_recognition, seal_recognition, layout_parsing — composed
of stages, independent of where the engines run.

Stages (each the run half of one in ``ensembles/table.py``): :class:`LayoutStage` (layout
detection), :class:`StructureStage` (SLANet(_plus) structure per table, OCR boxes matched into
cells), :class:`SealStage` (seal OCR per seal region), the OCR flow and the formula flow.
Each flow holds the stages its pipeline was built with and runs them in PaddleX's order;
:func:`flow_from_settings` builds the one a graph's settings name. Shipped in the document
graphs' runtime package; in-process (the parity references) the engines are runners.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Type

import numpy as np

from ..common.engine import Engine
from ..common.parameters import Parameter, ParameterError, ParameterSet
from ..common.settings import GraphSettings
from ..ocr.ocr_pipeline import PARAMETERS as OCR_PARAMETERS
from ..ocr.ocr_pipeline import SEAL_RENAMES, OCRFlow
from . import formula_ops, table_ops
from .layout_stage import PARAMETERS, LayoutStage, built_stage

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


# --- Stages ---


class StructureStage:
    """Table structure recognition: SLANet(_plus) per table crop, decoded, and the page's OCR
    boxes matched into its cells.

    Args:
        settings: ``TableSettings.structure`` ({characters, max_len, canvas_boxes, model}).
        engine: The TableStructureRecognition engine (x [1,3,L,L] → [boxes, probs]).
    """

    def __init__(self, settings: Dict, engine: Engine):
        self.settings, self.engine = settings, engine

    def tables(self, image: np.ndarray, boxes, ocr: Dict, whole_page: bool = False) -> List:
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
            result = table_ops.table_result(self.recognize(crop), ocr, box, (h, w))
            result["table_region_id"] = region_id
            out.append(result)
        return out

    def recognize(self, crop: np.ndarray) -> Dict:
        """Run the structure model on one table crop; return its decoded tokens and cell boxes."""
        spec = self.settings
        x = table_ops.structure_preprocess(crop, spec["max_len"])
        boxes, probs = self.engine.run(x)
        return table_ops.structure_decode(np.asarray(boxes)[0], np.asarray(probs)[0],
                                          spec["characters"], (crop.shape[1], crop.shape[0]),
                                          spec["max_len"], spec["canvas_boxes"])


class SealStage:
    """Seal text per seal region: the seal OCR (text_type seal) on each region's crop.

    Args:
        ocr: The seal OCR flow.
    """

    def __init__(self, ocr: OCRFlow):
        self.ocr = ocr

    def parameters(self, given: Dict) -> Dict:
        """The seal OCR's parameters for one request (its own names)."""
        return self.ocr.parameters(given)

    def seals(self, image: np.ndarray, boxes, params: Dict) -> List:
        """seal_res_list: seal OCR of each box's crop (polygons in crop coordinates, as
        PaddleX), numbered by ``seal_region_id`` from 1."""
        out = []
        for region_id, box in enumerate(boxes, start=1):
            crop = _region(image, box)
            if crop is None:
                result = self.ocr.empty_result()
            else:
                result = self.ocr.run(np.ascontiguousarray(crop), params=params)
            result["seal_region_id"] = region_id
            out.append(result)
        return out


def _region(image: np.ndarray, box):
    """The crop of a layout box [x1, y1, x2, y2] (page coordinates), None when under 2 px."""
    x1, y1, x2, y2 = (int(v) for v in box)
    crop = image[max(y1, 0):y2, max(x1, 0):x2]
    return None if crop.shape[0] < 2 or crop.shape[1] < 2 else crop


def _preprocess(ocr: OCRFlow, image: np.ndarray, ocr_params: Dict):
    """(page, doc_preprocessor_res or None): the OCR's doc_preprocessor flow when switched
    on."""
    if ocr_params["use_doc_preprocessor"]:
        return ocr.doc.run(image, ocr_params)
    return image, None


def _split(overrides: Optional[Dict], names) -> tuple:
    """(the request parameters in ``names``, the rest)."""
    rest = dict(overrides or {})
    return {k: rest.pop(k) for k in list(rest) if k in names}, rest


def _layout_parameters(given: Dict, defaults: Dict, layout: Optional[LayoutStage]) -> Dict:
    """:data:`PARAMETERS` of one request over the build's ``defaults``, checked against the
    build (layout detection asked without a LayoutDetection model is refused)."""
    chosen = PARAMETERS.coerce(given, defaults)
    if chosen["use_layout_detection"] and layout is None:
        raise ParameterError(
            "use_layout_detection=True needs a LayoutDetection model in the build")
    return chosen


# --- Flows ---

#: Each document flow by the pipeline name its settings carry (``TableSettings.task``).
FLOWS: Dict[str, Type] = {}


def document_flow(cls: Type) -> Type:
    """Class decorator: make ``cls`` the flow of graphs whose settings' task is ``cls.task``."""
    FLOWS[cls.task] = cls
    return cls


def flow_from_settings(settings, read_text: Callable[[str], str],
                       engine: Callable[[list], Engine]):
    """The document flow a graph's settings name, with its stages.

    Args:
        settings: :class:`TableSettings` (or their JSON).
        read_text: File name → the text the build wrote beside the graph (characters.txt).
        engine: Engine-call spec ([model, inputs, outputs]) → that engine.
    """
    settings = TableSettings.from_json(settings)
    return FLOWS[settings.task].from_settings(settings, read_text, engine)


def _ocr_flow(settings: Dict, characters: str, engine: Callable[[list], Engine]) -> OCRFlow:
    """An OCR flow from its settings JSON, its engines by the specs it names."""
    models = settings["models"]
    return OCRFlow.from_settings(settings, characters.split("\n"),
                                 lambda role: engine(models[role]))


@document_flow
class TableFlow:
    """PaddleX's table_recognition: [doc_preprocessor] → OCR on the whole page → tables
    (layout detection's "table" boxes, or the whole page as one table) → structure per table.

    Args:
        settings: :class:`TableSettings` (or their JSON).
        ocr: The OCR flow (with the doc_preprocessor flow when built).
        structure: The table-structure stage.
        layout: The layout stage, or None.
    """

    task = "table_recognition"

    def __init__(self, settings, ocr: OCRFlow, structure: StructureStage,
                 layout: Optional[LayoutStage] = None):
        self.settings = TableSettings.from_json(settings)
        self.ocr, self.structure, self.layout = ocr, structure, layout

    @classmethod
    def from_settings(cls, settings: TableSettings, read_text, engine) -> TableFlow:
        """Its stages from ``settings`` (see :func:`flow_from_settings`)."""
        return cls(settings, _ocr_flow(settings.ocr, read_text("characters.txt"), engine),
                   built_stage(StructureStage, settings.structure, engine),
                   built_stage(LayoutStage, settings.layout, engine))

    def parameters(self, overrides: Optional[Dict]):
        """(table parameters, OCR parameters) from one request's parameters."""
        own, rest = _split(overrides, PARAMETERS)
        return (_layout_parameters(own, self.settings.table_params, self.layout),
                self.ocr.parameters(rest))

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
        image, doc_result = _preprocess(self.ocr, image, ocr_params)
        ocr = self.ocr.run(image, params={**ocr_params, "use_doc_preprocessor": False})
        h, w = image.shape[:2]
        layout_result = None
        if table["use_layout_detection"]:
            layout_result = self.layout.detect(image, table["layout_threshold"])
            tables = self.structure.tables(image, LayoutStage.boxes(layout_result, "table"),
                                           ocr)
        else:
            tables = self.structure.tables(image, [[0, 0, w - 1, h - 1]], ocr,
                                           whole_page=True)
        out = {"model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                  "use_layout_detection": table["use_layout_detection"],
                                  "use_ocr_model": True},
               "overall_ocr_res": ocr, "table_res_list": tables}
        if doc_result is not None:
            out["doc_preprocessor_res"] = doc_result
        if layout_result is not None:
            out["layout_det_res"] = layout_result
        return out


@document_flow
class SealFlow:
    """PaddleX's seal_recognition: [doc_preprocessor] → layout detection's "seal" boxes (or
    the whole image as one seal) → seal OCR per seal.

    Args:
        settings: :class:`TableSettings` (or their JSON); ``ocr`` is the seal OCR's.
        seal: The seal stage (its OCR flow also runs the doc_preprocessor when built).
        layout: The layout stage, or None.
    """

    task = "seal_recognition"

    def __init__(self, settings, seal: SealStage, layout: Optional[LayoutStage] = None):
        self.settings = TableSettings.from_json(settings)
        self.seal, self.layout = seal, layout

    @classmethod
    def from_settings(cls, settings: TableSettings, read_text, engine) -> SealFlow:
        """Its stages from ``settings`` (see :func:`flow_from_settings`)."""
        ocr = _ocr_flow(settings.ocr, read_text("characters.txt"), engine)
        return cls(settings, SealStage(ocr), built_stage(LayoutStage, settings.layout, engine))

    def parameters(self, overrides: Optional[Dict]):
        """(layout parameters, seal OCR parameters) from one request's parameters."""
        own, rest = _split(overrides, PARAMETERS)
        return (_layout_parameters(own, self.settings.table_params, self.layout),
                self.seal.parameters(rest))

    def run(self, image: np.ndarray, table: Dict, ocr_params: Dict) -> Dict:
        """Recognize the seals of one image as PaddleX's seal_recognition does.

        Without layout detection the whole image is read as one seal.
        """
        image, doc_result = _preprocess(self.seal.ocr, image, ocr_params)
        inner = {**ocr_params, "use_doc_preprocessor": False}
        out = {"model_settings": {"use_doc_preprocessor": ocr_params["use_doc_preprocessor"],
                                  "use_layout_detection": table["use_layout_detection"]},
               "doc_preprocessor_res": doc_result or {}, "layout_det_res": {}}
        if table["use_layout_detection"]:
            layout = self.layout.detect(image, table["layout_threshold"])
            out["layout_det_res"] = layout
            out["seal_res_list"] = self.seal.seals(image, LayoutStage.boxes(layout, "seal"),
                                                   inner)
        else:
            whole = self.seal.ocr.run(image, params=inner)
            whole["seal_region_id"] = 1
            out["seal_res_list"] = [whole]
        return out


@document_flow
class LayoutParsingFlow:
    """PaddleX's layout_parsing (v1, the visual stage of PP-ChatOCRv3-doc): doc_preprocessor →
    layout detection → OCR on the page → tables (when a structure stage is built) → seals
    (when a seal stage is built) → one block per layout region (OCR text, table HTML, seal
    texts, LaTeX when a formula flow is built) and ``other_text`` blocks for OCR lines
    outside every region, in PaddleX's reading order.

    Args:
        settings: :class:`TableSettings` (or their JSON).
        ocr: The general OCR flow (with the doc_preprocessor flow when built).
        layout: The layout stage.
        structure: The table-structure stage, or None.
        seal: The seal stage, or None.
        formula: The formula flow (its ``regions``), or None.
    """

    task = "layout_parsing"

    def __init__(self, settings, ocr: OCRFlow, layout: LayoutStage,
                 structure: Optional[StructureStage] = None, seal: Optional[SealStage] = None,
                 formula: Optional[formula_ops.FormulaFlow] = None):
        self.settings = TableSettings.from_json(settings)
        self.ocr, self.layout, self.structure = ocr, layout, structure
        self.seal, self.formula = seal, formula

    @classmethod
    def from_settings(cls, settings: TableSettings, read_text, engine) -> LayoutParsingFlow:
        """Its stages from ``settings`` (see :func:`flow_from_settings`)."""
        seal = formula = None
        if settings.seal_ocr is not None:
            seal = SealStage(_ocr_flow(settings.seal_ocr, read_text("seal_characters.txt"),
                                       engine))
        if settings.formula is not None:
            formula = formula_ops.FormulaFlow.from_settings(
                {"formula": settings.formula}, read_text(settings.formula["tokenizer_file"]),
                engine)
        return cls(settings, _ocr_flow(settings.ocr, read_text("characters.txt"), engine),
                   built_stage(LayoutStage, settings.layout, engine),
                   built_stage(StructureStage, settings.structure, engine), seal, formula)

    def parameters(self, overrides: Optional[Dict]):
        """(layout parameters with ``use_seal_recognition``, ``use_formula_recognition`` and
        ``seal`` (the seal OCR's parameters), general OCR parameters)."""
        seal_given, rest = _split(overrides, SEAL_PARAMETERS)
        switches, rest = _split(rest, LAYOUT_PARSING_SWITCHES)
        own, rest = _split(rest, PARAMETERS)
        defaults = self.settings.table_params
        switch = LAYOUT_PARSING_SWITCHES.coerce(switches, {
            "use_seal_recognition": defaults.get("use_seal_recognition", self.seal is not None),
            "use_formula_recognition": defaults.get("use_formula_recognition",
                                                    self.formula is not None)})
        table = _layout_parameters({"use_layout_detection": True, **own}, defaults,
                                   self.layout)
        ocr = self.ocr.parameters(rest)
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

        Layout detection always runs; tables only when a structure stage is built, seals only
        with ``use_seal_recognition``, formulas only with ``use_formula_recognition``.
        """
        image, doc_result = _preprocess(self.ocr, image, ocr_params)
        inner = {**ocr_params, "use_doc_preprocessor": False}
        layout = self.layout.detect(image, table["layout_threshold"])
        ocr = self.ocr.run(image, params=inner)
        use_tables = self.structure is not None
        tables = (self.structure.tables(image, LayoutStage.boxes(layout, "table"), ocr)
                  if use_tables else [])
        seals = []
        if table["use_seal_recognition"]:
            seals = self.seal.seals(image, LayoutStage.boxes(layout, "seal"),
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
