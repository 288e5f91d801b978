"""PaddleX's table_recognition (v1): SLANet / SLANet_plus structure + OCR boxes matched into
cells → HTML. numpy + OpenCV only; shipped in the table graph's runtime package.

Semantics follow PaddleX 3.7.2 (models/table_structure_recognition, pipelines/
table_recognition): ResizeByLong(488, round) → ImageNet Normalize in BGR order → zero Pad to
488x488 → CHW; TableLabelDecode (sos/eos, ``<td></td>`` merge, boxes at ``<td`` tokens);
each OCR box goes to the cell with the smallest (1 - IoU, L1 distance); HTML as PaddleX builds
it (OCR text is not escaped, as in PaddleX).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import cv2
import numpy as np

from ..common.image_io import normalize_chw

TD_TOKENS = ("<td>", "<td", "<td></td>")
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def structure_characters(tokens: Sequence[str], merge_no_span_structure: bool = True) -> List[str]:
    """PaddleX TableLabelDecode's class list: ``<td></td>`` merged, sos/eos around."""
    chars = list(tokens)
    if merge_no_span_structure:
        if "<td></td>" not in chars:
            chars.append("<td></td>")
        if "<td>" in chars:
            chars.remove("<td>")
    return ["sos"] + chars + ["eos"]


def structure_preprocess(bgr: np.ndarray, max_len: int = 488, mean=None, std=None):
    """One BGR table crop → x [1,3,max_len,max_len] float32 (BGR, as PaddleX)."""
    h, w = bgr.shape[:2]
    scale = max_len / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = bgr if size == (w, h) else cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)
    chw = normalize_chw(image, mean or IMAGENET_MEAN, std or IMAGENET_STD, 1 / 255.0)
    x = np.zeros((1, 3, max_len, max_len), np.float32)
    x[0, :, :chw.shape[1], :chw.shape[2]] = chw
    return x


def structure_decode(bbox_pred: np.ndarray, probs: np.ndarray, characters: Sequence[str],
                     source_wh, max_len: int = 488, canvas_boxes: bool = True) -> Dict:
    """PaddleX TableLabelDecode for one table. ``canvas_boxes``: boxes are normalised to the
    padded canvas (SLANet_plus: × the long side) rather than to the image (SLANet: x × w,
    y × h). 4-value boxes (x1,y1,x2,y2) become 8-point polygons."""
    sos, eos = 0, len(characters) - 1
    w, h = source_wh
    index, score = probs.argmax(axis=-1), probs.max(axis=-1)
    tokens, scores, boxes = [], [], []
    for step, char in enumerate(index.tolist()):
        if step > 0 and char == eos:
            break
        if char in (sos, eos):
            continue
        text = characters[char]
        if text in TD_TOKENS:
            box = np.asarray(bbox_pred[step], np.float64)
            if box.size == 4:
                x1, y1, x2, y2 = box
                box = np.array([x1, y1, x2, y1, x2, y2, x1, y2])
            if canvas_boxes:
                box = box * max(w, h)
            else:
                box = box * np.array([w, h] * 4)
            boxes.append(box.astype(int).tolist())
        tokens.append(text)
        scores.append(float(score[step]))
    return {"bbox": boxes,
            "structure": ["<html>", "<body>", "<table>", *tokens, "</table>", "</body>",
                          "</html>"],
            "structure_score": float(np.mean(scores)) if scores else 0.0}


# --- matching OCR boxes into cells (pipelines/table_recognition) ------------------------------

def _distance(cell, box) -> float:
    x1, y1, x2, y2 = cell
    x3, y3, x4, y4 = box
    dis = abs(x3 - x1) + abs(y3 - y1) + abs(x4 - x2) + abs(y4 - y2)
    return dis + min(abs(x3 - x1) + abs(y3 - y1), abs(x4 - x2) + abs(y4 - y2))


def _iou(a, b) -> float:
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[2], b[2]), min(a[3], b[3])
    if left >= right or top >= bottom:
        return 0.0
    inter = (right - left) * (bottom - top)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def match_table_and_ocr(cell_boxes, ocr_boxes) -> Dict[int, List[int]]:
    """Each OCR box → the cell with the smallest (1 - IoU, L1 distance), first on ties."""
    matched: Dict[int, List[int]] = {}
    for i, box in enumerate(np.asarray(ocr_boxes, np.float32).reshape(-1, 4)):
        keys = [(1.0 - _iou(cell, box), _distance(cell, box)) for cell in cell_boxes]
        best = min(range(len(keys)), key=lambda j: keys[j])
        matched.setdefault(best, []).append(i)
    return matched


def html_result(matched: Dict[int, List[int]], texts: Sequence[str],
                structure: Sequence[str]) -> str:
    """PaddleX get_html_result: OCR texts placed before each cell's closing tag."""
    out = []
    td_index = 0
    for tag in structure[3:-3]:
        if "</td>" not in tag:
            out.append(tag)
            continue
        if tag == "<td></td>":
            out.append("<td>")
        if td_index in matched:
            ids = matched[td_index]
            bold = "<b>" in texts[ids[0]] and len(ids) > 1
            if bold:
                out.append("<b>")
            for k, i in enumerate(ids):
                text = texts[i]
                if len(ids) > 1:
                    if not text:
                        continue
                    if text[0] == " ":
                        text = text[1:]
                    if "<b>" in text:
                        text = text[3:]
                    if "</b>" in text:
                        text = text[:-4]
                    if not text:
                        continue
                    if k != len(ids) - 1 and text[-1] != " ":
                        text += " "
                out.append(text)
            if bold:
                out.append("</b>")
        out.append("</td>" if tag == "<td></td>" else tag)
        td_index += 1
    return "".join(structure[:3]) + "".join(out) + "".join(structure[-3:])


def sub_region_ocr(ocr: Dict, regions, within: bool = True):
    """PaddleX get_sub_regions_ocr_res: the OCR results whose boxes overlap any of ``regions``
    by more than 3 px each way (``within``), or none of them; in order. Returns (result,
    indices of the overlapping boxes)."""
    boxes = np.asarray(ocr["rec_boxes"], np.float64).reshape(-1, 4)
    hits = np.zeros(len(boxes), bool)
    for x1, y1, x2, y2 in np.asarray(regions, np.float64).reshape(-1, 4):
        pub_w = np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1)
        pub_h = np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1)
        hits |= (pub_w > 3) & (pub_h > 3)
    keep = np.flatnonzero(hits if within else ~hits).tolist()
    result = {key: [ocr[key][i] for i in keep]
              for key in ("rec_polys", "rec_texts", "rec_scores", "rec_boxes")}
    return result, np.flatnonzero(hits).tolist()


def table_result(structure: Dict, ocr: Dict, table_box, page_hw) -> Dict:
    """One table of PaddleX's table_res_list: ``cell_box_list`` (page coordinates),
    ``pred_html``, ``table_ocr_pred``."""
    table_ocr, _ = sub_region_ocr(ocr, [table_box])
    x0, y0 = float(table_box[0]), float(table_box[1])
    h, w = page_hw
    cells = []
    for poly in structure["bbox"]:
        pts = (np.asarray(poly, np.float64).reshape(4, 2) + [x0, y0])
        cells.append([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()])
    cells = np.clip(np.asarray(cells, np.float64).reshape(-1, 4), 0, [w, h, w, h]).tolist()
    if not cells or not table_ocr["rec_boxes"]:
        html = " ".join(structure["structure"])
    else:
        matched = match_table_and_ocr(cells, table_ocr["rec_boxes"])
        html = html_result(matched, table_ocr["rec_texts"], structure["structure"])
    return {"cell_box_list": cells, "pred_html": html, "table_ocr_pred": table_ocr}
