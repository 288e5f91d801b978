"""A generated OCR accuracy set: document-like pages with known text.

English and Chinese lines in several fonts from Debian's fonts-dejavu-core and
fonts-wqy-microhei, several sizes, slight rotation, blur and noise. Deterministic for a seed.
Used by tests/functional/test_ocr.py and bench/ocr.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

FONT_DIRS = [Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/truetype/wqy")]
LATIN_FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf"]
CJK_FONT = "wqy-microhei.ttc"

ENGLISH = [
    "Invoice number 2026-11-0457", "Total amount due: 1,284.50 USD", "Shipping address",
    "Model serving with Triton", "Please sign and return", "Order date 26/11/2026",
    "Customer ID: KX-40917", "Thank you for your business", "Payment terms: 30 days",
    "Quantity 12 units", "Tax rate 8.25%", "Contact: support@example.com",
    "Reference PO-88341", "Delivery by courier", "Page 3 of 7", "Account balance 0.00",
]
CHINESE = [
    "人工智能改变世界", "今天天气很好", "北京市海淀区中关村", "欢迎使用飞桨", "发票金额合计",
    "中华人民共和国", "深度学习模型部署", "文字识别服务", "请在下方签字确认", "订单编号",
    "客户服务热线", "本页共计三项", "上海市浦东新区", "数据安全与隐私保护",
]


@dataclass
class Page:
    image: np.ndarray  # BGR uint8
    lines: List[str]   # ground truth, top to bottom
    name: str


def font_path(name: str):
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    return None


def has_cjk_font() -> bool:
    return font_path(CJK_FONT) is not None


def make_pages(count: int = 12, seed: int = 0, lines_per_page: int = 5) -> List[Page]:
    """``count`` pages; Chinese lines only where fonts-wqy-microhei is installed."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    latin = [font_path(n) for n in LATIN_FONTS if font_path(n)]
    if not latin:
        raise RuntimeError("no DejaVu fonts found; install Debian's fonts-dejavu-core")
    cjk = font_path(CJK_FONT)
    pages = []
    for index in range(count):
        width, height = 960, 80 + lines_per_page * 90
        page = Image.new("RGB", (width, height), (250, 250, 246))
        draw = ImageDraw.Draw(page)
        lines, y = [], 40
        for _ in range(lines_per_page):
            chinese = cjk is not None and rng.random() < 0.4
            text = rng.choice(CHINESE if chinese else ENGLISH)
            font = ImageFont.truetype(str(cjk if chinese else rng.choice(latin)),
                                      rng.randint(26, 40))
            draw.text((rng.randint(30, 120), y), text, font=font, fill=(20, 20, 20))
            lines.append(text)
            y += 90
        image = cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)
        angle = rng.uniform(-1.5, 1.5)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        image = cv2.warpAffine(image, matrix, (width, height), borderValue=(250, 250, 246))
        if rng.random() < 0.5:
            image = cv2.GaussianBlur(image, (3, 3), 0.6)
        noise = np.random.default_rng(seed * 1000 + index).normal(0, 4, image.shape)
        image = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        pages.append(Page(image, lines, f"page_{index:02d}"))
    return pages


def edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _squash(text: str) -> str:
    # PP-OCRv4 mobile (Chinese dict) emits no spaces between Latin words; RapidOCR's output is
    # the same. CER is therefore measured with whitespace removed on both sides.
    return "".join(text.split())


def page_cer(predicted_lines: List[str], truth_lines: List[str]):
    """(edits, reference characters) for one page, lines joined in reading order."""
    truth = _squash("".join(truth_lines))
    return edit_distance(_squash("".join(predicted_lines)), truth), len(truth)


def cer(predictions: List[List[str]], pages: List[Page]) -> float:
    edits = total = 0
    for predicted, page in zip(predictions, pages):
        e, n = page_cer(predicted, page.lines)
        edits += e
        total += n
    return edits / max(total, 1)


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
