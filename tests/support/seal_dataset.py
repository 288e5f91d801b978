"""Generated round red seals with curved text, and pages carrying one.

A seal is a red ring with its text set along the upper arc (each character upright to the
circle's radius, as stamps are cut), a star in the middle and an optional straight line below
it, slightly blurred like ink. The ground truth is the arc text and the straight line. Fonts:
WenQuanYi Micro Hei when Debian's fonts-wqy-microhei is installed (Chinese seal text, what the
PP-OCRv4 seal detector was trained on), else DejaVu Sans (Latin capitals).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import List

import numpy as np

from tests.support.ocr_dataset import CJK_FONT, LATIN_FONTS, font_path

CJK_NAMES = ["北京星河科技有限公司", "上海海川贸易有限公司", "深圳明远电子有限公司",
             "杭州云帆信息技术有限公司", "广州华南物流有限公司", "成都天府文化传媒有限公司"]
CJK_LINES = ["合同专用章", "财务专用章", "发票专用章"]
LATIN_NAMES = ["NORTHWIND TRADING COMPANY", "CONTOSO SUPPLY LIMITED", "FABRIKAM HOLDINGS GROUP",
               "ADVENTURE WORKS CORPORATION", "TAILSPIN TOYS LIMITED", "WINGTIP PARTNERS LLC"]
LATIN_LINES = ["CONTRACT SEAL", "FINANCE SEAL", "INVOICE SEAL"]
RED = (30, 30, 220)  # BGR


@dataclass
class Seal:
    image: np.ndarray  # BGR uint8
    arc_text: str
    line_text: str


def _font(cjk: bool):
    path = font_path(CJK_FONT) if cjk else None
    return path or font_path(LATIN_FONTS[3]) or font_path(LATIN_FONTS[0])


def make_seal(seed: int, size: int = 400, cjk: bool | None = None) -> Seal:
    """One seal image (white background, ``size`` x ``size``)."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    use_cjk = (font_path(CJK_FONT) is not None) if cjk is None else cjk
    names, lines = (CJK_NAMES, CJK_LINES) if use_cjk else (LATIN_NAMES, LATIN_LINES)
    arc_text, line_text = names[seed % len(names)], rng.choice(lines)
    font_file = str(_font(use_cjk))
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    centre, radius = size / 2, size * 0.46
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius],
                 outline=(220, 30, 30), width=max(6, size // 45))
    # Characters upright to the radius along an arc of ~240 degrees over the top.
    glyph_size = int(size * (0.105 if use_cjk else 0.075))
    font = ImageFont.truetype(font_file, glyph_size)
    sweep = math.radians(230 if len(arc_text) > 8 else 200)
    text_radius = radius - size * 0.1
    for k, char in enumerate(arc_text):
        # angle measured from straight up, clockwise; first character on the left
        angle = -sweep / 2 + sweep * (k + 0.5) / len(arc_text)
        tile = Image.new("RGBA", (glyph_size * 2, glyph_size * 2), (0, 0, 0, 0))
        ImageDraw.Draw(tile).text((glyph_size, glyph_size), char, font=font,
                                  fill=(220, 30, 30, 255), anchor="mm")
        tile = tile.rotate(-math.degrees(angle), resample=Image.BICUBIC)
        x = centre + text_radius * math.sin(angle)
        y = centre - text_radius * math.cos(angle)
        canvas.paste(tile, (int(x - glyph_size), int(y - glyph_size)), tile)
    star = [(centre + size * 0.09 * math.sin(math.radians(a)) * (1 if i % 2 == 0 else 0.4),
             centre - size * 0.02 - size * 0.09 * math.cos(math.radians(a))
             * (1 if i % 2 == 0 else 0.4)) for i, a in enumerate(range(0, 360, 36))]
    draw.polygon(star, fill=(220, 30, 30))
    line_font = ImageFont.truetype(font_file, int(size * (0.075 if use_cjk else 0.055)))
    draw.text((centre, centre + size * 0.22), line_text, font=line_font, fill=(220, 30, 30),
              anchor="mm")
    image = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
    image = cv2.GaussianBlur(image, (3, 3), 0)
    return Seal(image=image, arc_text=arc_text, line_text=line_text)


def make_seals(count: int = 6, seed: int = 0, size: int = 400) -> List[Seal]:
    return [make_seal(seed + i, size) for i in range(count)]


def make_seal_page(seed: int = 0) -> tuple:
    """A white page with two paragraphs and a seal stamped at the lower right: (BGR page,
    seal, the seal's box [x1, y1, x2, y2])."""
    from tests.support.ocr_dataset import make_layout_page

    page = make_layout_page(seed).copy()
    seal = make_seal(seed, size=300)
    h, w = page.shape[:2]
    x1, y1 = w - 300 - 40, h - 300 - 40
    region = page[y1:y1 + 300, x1:x1 + 300]
    # Ink multiplies: the seal darkens the page where it is red.
    page[y1:y1 + 300, x1:x1 + 300] = (region.astype(np.float32) * seal.image / 255.0
                                      ).astype(np.uint8)
    return page, seal, [x1, y1, x1 + 300, y1 + 300]
