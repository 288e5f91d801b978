"""The generated OCR accuracy set (now :mod:`hpi_triton.pages`, which the build uses too) and
a rendered document page with a table for the document pipelines' tests."""

from __future__ import annotations

import random

import numpy as np

from hpi_triton.pages import (  # noqa: F401  (re-exported for the tests and bench/)
    CHINESE,
    CJK_FONT,
    ENGLISH,
    LATIN_FONTS,
    Page,
    cer,
    edit_distance,
    font_path,
    has_cjk_font,
    make_pages,
    make_realistic_pages,
)


def make_layout_page(seed: int = 0) -> np.ndarray:
    """A rendered document page (BGR): a title, text paragraphs and a ruled table."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    regular = font_path("DejaVuSerif.ttf") or font_path("DejaVuSans.ttf")
    bold = font_path("DejaVuSans-Bold.ttf") or regular
    page = Image.new("RGB", (1240, 1754), "white")
    draw = ImageDraw.Draw(page)
    draw.text((160, 110), "Quarterly Report on Model Serving", font=ImageFont.truetype(
        str(bold), 52), fill="black")
    body = ImageFont.truetype(str(regular), 26)
    y = 260
    for _ in range(3):
        for _ in range(6):
            words = " ".join(" ".join(rng.choice(ENGLISH).split()[:4]) for _ in range(3))
            draw.text((120, y), words[:70], font=body, fill="black")
            y += 40
        y += 50
    top, rows, cols, cell_w, cell_h = y + 40, 6, 4, 240, 56
    for r in range(rows + 1):
        draw.line([(140, top + r * cell_h), (140 + cols * cell_w, top + r * cell_h)],
                  fill="black", width=2)
    for c in range(cols + 1):
        draw.line([(140 + c * cell_w, top), (140 + c * cell_w, top + rows * cell_h)],
                  fill="black", width=2)
    for r in range(rows):
        for c in range(cols):
            draw.text((155 + c * cell_w, top + 12 + r * cell_h), f"{rng.randint(10, 9999)}",
                      font=body, fill="black")
    return cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)
