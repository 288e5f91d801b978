"""Rendered text pages with known text, and the CER that scores an OCR reading of them.

English and Chinese lines in several fonts from Debian's fonts-dejavu-core and
fonts-wqy-microhei, several sizes, slight rotation, blur and noise; deterministic for a seed.
The build's int8 calibration and accuracy gate (:mod:`hpi_triton.transforms.quantize`), the
CPU layout measurement, the tests and bench/ use them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

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
    """One rendered page and the text on it."""

    image: np.ndarray  # BGR uint8
    lines: List[str]   # ground truth, top to bottom
    name: str


def font_path(name: str):
    """The installed font file ``name`` (Debian's font folders), or None."""
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    return None


def has_cjk_font() -> bool:
    """Whether Chinese lines can be rendered (fonts-wqy-microhei installed)."""
    return font_path(CJK_FONT) is not None


def installed_fonts() -> List[Path]:
    """The font files rendered pages use here (they decide what the pages show)."""
    return [f for f in (font_path(n) for n in [*LATIN_FONTS, CJK_FONT]) if f]


def _fonts():
    """(Latin font files, the CJK font or None)."""
    latin = [font_path(n) for n in LATIN_FONTS if font_path(n)]
    if not latin:
        raise RuntimeError("no DejaVu fonts found; install Debian's fonts-dejavu-core")
    return latin, font_path(CJK_FONT)


def make_pages(count: int = 12, seed: int = 0, lines_per_page: int = 5) -> List[Page]:
    """``count`` pages; Chinese lines only where fonts-wqy-microhei is installed."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    latin, cjk = _fonts()
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
        pages.append(Page(_scanned(page, rng, seed * 1000 + index), lines, f"page_{index:02d}"))
    return pages


def _scanned(page, rng: random.Random, noise_seed: int) -> np.ndarray:
    """The rendered PIL page as a BGR scan: slight rotation, sometimes blur, sensor noise."""
    import cv2

    image = cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)
    height, width = image.shape[:2]
    angle = rng.uniform(-1.5, 1.5)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    image = cv2.warpAffine(image, matrix, (width, height), borderValue=(250, 250, 246))
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), 0.6)
    noise = np.random.default_rng(noise_seed).normal(0, 4, image.shape)
    return np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def make_realistic_pages(count: int = 24, seed: int = 0, min_lines: int = 10,
                         max_lines: int = 16) -> List[Page]:
    """Document-like pages of 640-1400 px a side with ``min_lines``-``max_lines`` lines each.

    Lines have mixed lengths (one to several phrases, English or Chinese, 18-34 px fonts, cut
    to fit the page), so recognition sees the spread of crop widths real pages give.
    """
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    latin, cjk = _fonts()
    pages = []
    for index in range(count):
        width = rng.randint(640, 1400)
        wanted = rng.randint(min_lines, max_lines)
        spacing = rng.randint(44, 64)
        height = max(640, min(1400, 60 + wanted * spacing + rng.randint(0, 200)))
        page = Image.new("RGB", (width, height), (250, 250, 246))
        draw = ImageDraw.Draw(page)
        lines, y = [], 40
        while len(lines) < wanted and y + spacing < height - 20:
            chinese = cjk is not None and rng.random() < 0.4
            font = ImageFont.truetype(str(cjk if chinese else rng.choice(latin)),
                                      rng.randint(18, 34))
            left = rng.randint(24, 100)
            words = [rng.choice(CHINESE if chinese else ENGLISH)
                     for _ in range(rng.choice([1, 1, 2, 2, 3]))]
            text = ("，" if chinese else ", ").join(words)
            while len(text) > 4 and draw.textlength(text, font=font) > width - left - 24:
                text = text[:-1].rstrip(" ,，")
            draw.text((left, y), text, font=font, fill=(20, 20, 20))
            lines.append(text)
            y += spacing
        pages.append(Page(_scanned(page, rng, seed * 1000 + index), lines, f"page_{index:02d}"))
    return pages


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between ``a`` and ``b``."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _squash(text: str) -> str:
    # The CER below ignores whitespace: it counts characters read wrong, not words merged.
    # Merged words ("Invoicenumber4711") are what cer_with_spaces and word_f1 count.
    return "".join(text.split())


def page_cer(predicted_lines: List[str], truth_lines: List[str]):
    """(edits, reference characters) for one page, lines joined in reading order."""
    truth = _squash("".join(truth_lines))
    return edit_distance(_squash("".join(predicted_lines)), truth), len(truth)


def cer(predictions: List[List[str]], pages: List[Page]) -> float:
    """Character error rate of ``predictions`` (lines per page) against the pages' text."""
    edits = total = 0
    for predicted, page in zip(predictions, pages):
        e, n = page_cer(predicted, page.lines)
        edits += e
        total += n
    return edits / max(total, 1)


def _spaced(lines: Sequence[str]) -> str:
    """Lines joined by one space, each run of whitespace collapsed to one space."""
    return " ".join(" ".join(lines).split())


def page_cer_with_spaces(predicted_lines: Sequence[str], truth_lines: Sequence[str]):
    """(edits, reference characters) for one page with its spaces kept: lines joined by a
    space, runs of whitespace collapsed, so a missing space between two words is an edit."""
    truth = _spaced(truth_lines)
    return edit_distance(_spaced(predicted_lines), truth), len(truth)


def page_words(predicted_lines: Sequence[str], truth_lines: Sequence[str]) -> Tuple[int, int, int]:
    """(words read right, words read, words in the truth) for one page.

    Words are whitespace-separated tokens, matched as multisets (reading order does not
    matter, so a real page's text layer can be the truth); a merged pair of words is one
    wrong word read and two truth words missed. A Chinese line without spaces is one word.
    """
    read = Counter(_spaced(predicted_lines).split())
    truth = Counter(_spaced(truth_lines).split())
    return sum((read & truth).values()), sum(read.values()), sum(truth.values())


def _truths(pages) -> List[Sequence[str]]:
    return [page.lines if isinstance(page, Page) else page for page in pages]


def cer_with_spaces(predictions: List[List[str]], pages) -> float:
    """Character error rate with spaces kept (:func:`page_cer_with_spaces`); ``pages`` are
    :class:`Page` objects or their truth lines."""
    edits = total = 0
    for predicted, truth in zip(predictions, _truths(pages)):
        e, n = page_cer_with_spaces(predicted, truth)
        edits, total = edits + e, total + n
    return edits / max(total, 1)


def word_f1(predictions: List[List[str]], pages) -> float:
    """Word F1 over all pages (micro average of :func:`page_words`): 1.0 only when every word
    is read right and no word is merged or split."""
    right = read = truth = 0
    for predicted, lines in zip(predictions, _truths(pages)):
        r, p, t = page_words(predicted, lines)
        right, read, truth = right + r, read + p, truth + t
    if not right:
        return 0.0
    precision, recall = right / read, right / truth
    return 2 * precision * recall / (precision + recall)


def scores(predictions: List[List[str]], pages) -> Dict[str, float]:
    """The three accuracy measures, as the gate, the report and bench/ print them:
    ``cer`` and ``cer_spaces`` in percent, ``word_f1`` in [0, 1]."""
    truths = _truths(pages)
    edits = total = 0
    for predicted, lines in zip(predictions, truths):
        e, n = page_cer(predicted, lines)
        edits, total = edits + e, total + n
    return {"cer": round(edits / max(total, 1) * 100, 3),
            "cer_spaces": round(cer_with_spaces(predictions, truths) * 100, 3),
            "word_f1": round(word_f1(predictions, truths), 4)}


def document_pages(pdf: Path, count: int, first: int = 0, dpi: int = 144) -> List[Page]:
    """Up to ``count`` pages of a real PDF (``.pdf`` or ``.pdf.gz``, e.g. a manual from
    /usr/share/doc), rendered at ``dpi`` (PaddleX renders PDFs at 144), their text layer as
    the truth lines; pages without text are skipped.

    The text layer's reading order need not be the OCR's: :func:`word_f1` (order-free) is the
    measure for these pages; the CERs also count order differences.
    """
    import gzip

    import pypdfium2

    data = pdf.read_bytes()
    if pdf.suffix == ".gz":
        data = gzip.decompress(data)
    document = pypdfium2.PdfDocument(data)
    pages: List[Page] = []
    try:
        for index in range(first, len(document)):
            if len(pages) >= count:
                break
            page = document[index]
            text = page.get_textpage().get_text_range()
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if len(lines) < 3:
                continue
            rgb = page.render(scale=dpi / 72).to_numpy()[:, :, :3]
            image = np.ascontiguousarray(rgb[:, :, ::-1])  # BGR, as the rendered pages
            pages.append(Page(image, lines, f"{pdf.name.split('.')[0]}_p{index + 1}"))
    finally:
        document.close()
    return pages
