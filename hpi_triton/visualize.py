"""Pictures of pipeline results, in the spirit of PaddleX's ``save_to_img``.

One function draws whatever a result holds, so every served pipeline (and a renamed one)
gets a picture without knowing which it is: OCR and seal polygons with their texts beside
the page (PaddleX's two-panel OCR picture), table cells, layout and parsing blocks,
detection boxes with labels and scores, instance masks, semantic label maps, the class
label, and the doc preprocessor's corrected page beside the input. Pillow only (a
dependency of matplotlib): no OpenCV on the client side.
"""

from __future__ import annotations

import colorsys
import functools
import io
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

# Fonts that also draw Chinese (the OCR models' dictionaries are Chinese + English); Pillow's
# own font otherwise (CJK characters then show as boxes).
_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
)


@functools.lru_cache(maxsize=32)
def font(size: int):
    """A TrueType font of ``size`` px: the first of :data:`_FONT_PATHS` present, else
    Pillow's built-in one."""
    from PIL import ImageFont

    size = max(8, int(size))
    for path in _FONT_PATHS:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return ImageFont.load_default(size=size)


def color(i: int) -> tuple:
    """A distinct, saturated RGB colour for index ``i`` (golden-ratio hues)."""
    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_result(rgb: np.ndarray, result: Dict) -> np.ndarray:
    """``result`` drawn on ``rgb`` (the input as an RGB uint8 array); an RGB uint8 array.

    Raises:
        ValueError: ``rgb`` is not an HxWx3 uint8 image.
    """
    from PIL import Image

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image is {rgb.dtype} {list(rgb.shape)}; expected HxWx3 uint8 RGB")
    if isinstance(result.get("output_img"), np.ndarray):  # doc_preprocessor
        corrected = Image.open(io.BytesIO(result["output_img"].tobytes())).convert("RGB")
        return _side_by_side(Image.fromarray(rgb), corrected)
    page = _page_frame(Image.fromarray(rgb), result.get("doc_preprocessor_res") or {})
    page = _overlay_label_maps(page, result)
    ocr = result if "rec_polys" in result else result.get("overall_ocr_res") or {}
    texts = _draw_layers(page, result, ocr)
    if texts:  # OCR-like: polygons on the page, their texts on a white panel beside it
        panel = Image.new("RGB", page.size, (255, 255, 255))
        _write_texts(panel, texts)
        return _side_by_side(page, panel)
    return np.asarray(page)


def _page_frame(page, doc_result: Dict):
    """The page the coordinates refer to: turned like the doc preprocessor turned it
    (counter-clockwise by its angle; an unwarped page cannot be redone here, so the input is
    drawn on as it is)."""
    angle = doc_result.get("angle", -1)
    if angle in (90, 180, 270):
        return page.rotate(angle, expand=True)
    return page


def _overlay_label_maps(page, result: Dict):
    """Semantic label maps and instance masks blended over the page in colour."""
    from PIL import Image

    base = np.asarray(page).astype(np.float32)
    h, w = base.shape[:2]
    pred = result.get("pred")
    if isinstance(pred, np.ndarray) and pred.ndim == 2 and pred.shape == (h, w):
        palette = np.array([color(i) for i in range(256)], np.float32)
        base = 0.5 * base + 0.5 * palette[pred.astype(np.int64) % 256]
    masks = result.get("masks")
    if isinstance(masks, np.ndarray) and masks.ndim == 3 and masks.shape[1:] == (h, w):
        for i, mask in enumerate(masks):
            on = mask.astype(bool)
            base[on] = 0.5 * base[on] + 0.5 * np.array(color(i), np.float32)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


def _draw_layers(page, result: Dict, ocr: Dict) -> List[tuple]:
    """Draw every box-like field of ``result`` on ``page`` in place; the (polygon, text,
    colour) of recognised texts, for the text panel."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(page)
    width = max(1, round(max(page.size) / 500))
    label_font = font(max(12, max(page.size) // 60))
    for i, box in enumerate(result.get("boxes") or []):  # detection / instance segmentation
        caption = f"{box.get('label', box.get('cls_id', ''))} {box.get('score', 0):.2f}"
        _box(draw, box["coordinate"], color(int(box.get("cls_id", i))), width, caption,
             label_font)
    for i, box in enumerate((result.get("layout_det_res") or {}).get("boxes") or []):
        _box(draw, box["coordinate"], color(int(box.get("cls_id", i))), width,
             f"{box.get('label', '')} {box.get('score', 0):.2f}", label_font)
    for i, block in enumerate(result.get("parsing_res_list") or []):
        _box(draw, block["block_bbox"], color(i + 7), width, block.get("block_label", ""),
             label_font)
    for table in result.get("table_res_list") or []:
        for cell in table.get("cell_box_list") or []:
            _box(draw, cell, (230, 40, 40), width)
    texts = _polygons(draw, ocr, width, 0)
    # Seal polygons are in their crop's coordinates (as PaddleX's); crop k is the k-th
    # layout box labelled seal, or the whole page without layout detection.
    seal_boxes = [b["coordinate"] for b in (result.get("layout_det_res") or {}).get("boxes")
                  or [] if str(b.get("label", "")).lower() == "seal"]
    for k, seal in enumerate(result.get("seal_res_list") or []):
        region = int(seal.get("seal_region_id", k + 1)) - 1
        offset = seal_boxes[region][:2] if 0 <= region < len(seal_boxes) else (0, 0)
        texts += _polygons(draw, seal, width, len(texts), offset)
    if "class_ids" in result:
        names = result.get("label_names") or [str(c) for c in result["class_ids"]]
        scores = result.get("scores") or []
        line = ", ".join(f"{n} {s:.2f}" for n, s in zip(names[:3], scores[:3])) or "-"
        _caption(draw, (4, 4), line, (30, 30, 220), font(max(14, max(page.size) // 25)))
    return texts


def _polygons(draw, ocr: Dict, width: int, first: int,
              offset: Sequence[float] = (0, 0)) -> List[tuple]:
    polys = ocr.get("rec_polys") or ocr.get("dt_polys") or []
    texts = ocr.get("rec_texts") or [""] * len(polys)
    found = []
    dx, dy = (float(v) for v in offset)
    for i, (poly, text) in enumerate(zip(polys, texts)):
        points = [(float(p[0]) + dx, float(p[1]) + dy) for p in poly]
        if len(points) < 2:
            continue
        tint = color(first + i)
        draw.line(points + [points[0]], fill=tint, width=width)
        found.append((points, str(text), tint))
    return found


def _box(draw, coordinate: Sequence[float], tint: tuple, width: int,
         caption: Optional[str] = None, caption_font=None) -> None:
    x1, y1, x2, y2 = (float(v) for v in list(coordinate)[:4])
    draw.rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=tint, width=width)
    if caption:
        _caption(draw, (x1, y1), caption, tint, caption_font)


def _caption(draw, origin, text: str, tint: tuple, caption_font) -> None:
    """``text`` in white on a ``tint`` band just above ``origin`` (inside the image)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=caption_font)
    x, y = origin[0], max(0.0, origin[1] - (bottom - top) - 4)
    draw.rectangle([x, y, x + right - left + 4, y + bottom - top + 4], fill=tint)
    draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=caption_font)


def _write_texts(panel, texts: Iterable[tuple]) -> None:
    """Each recognised text at its polygon's place on the white panel, sized to its box."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(panel)
    for points, text, tint in texts:
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        draw.polygon(points, outline=tint)
        if not text:
            continue
        height = max(ys) - min(ys)
        text_font = font(max(8, min(int(height * 0.8), 64)))
        draw.text((min(xs) + 2, min(ys) + max(0.0, height * 0.1)), text, fill=(0, 0, 0),
                  font=text_font)


def _side_by_side(left, right) -> np.ndarray:
    from PIL import Image

    height = max(left.height, right.height)
    canvas = Image.new("RGB", (left.width + right.width, height), (255, 255, 255))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    return np.asarray(canvas)
