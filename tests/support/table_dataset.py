"""Generated table images with known structure and text, and the TEDS metric.

Tables are rendered from a cell grid (optional header cells spanning two columns), ruled or
borderless, with Debian's DejaVu fonts. ``teds`` is the Tree-Edit-Distance-based Similarity of
PubTabNet (Zhong et al., 2020): 1 - APTED(tree_a, tree_b) / max(|a|, |b|), where renaming a
``td`` costs its normalised text edit distance (0 in structure-only mode) and other renames 1
(thead/tbody are ignored).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import List, Optional

import numpy as np

from tests.support.ocr_dataset import LATIN_FONTS, font_path

WORDS = ["Apple", "Pear", "Plum", "Total", "Item", "Qty", "Price", "North", "South", "East",
         "West", "Q1", "Q2", "Q3", "Q4", "Tax", "Net", "Gross", "Units", "Name", "Code"]


@dataclass
class Table:
    image: np.ndarray  # BGR uint8
    html: str          # ground truth, PaddleX's form: <html><body><table>...</table></body></html>
    name: str


def make_table(seed: int, rows: int = 4, cols: int = 3, ruled: bool = True,
               span_header: bool = False) -> Table:
    """A ``rows`` x ``cols`` table; with ``span_header`` the first header cell spans two
    columns. Cell texts are words and numbers."""
    import cv2
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    font = ImageFont.truetype(str(font_path(LATIN_FONTS[0])), 22)
    cell_w, cell_h, margin = 150, 48, 24
    width, height = margin * 2 + cell_w * cols, margin * 2 + cell_h * rows
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    html_rows = []
    for r in range(rows):
        cells, c = [], 0
        while c < cols:
            span = 2 if (span_header and r == 0 and c == 0 and cols > 2) else 1
            text = rng.choice(WORDS) if r == 0 or c == 0 else str(rng.randint(1, 999))
            x1, y1 = margin + c * cell_w, margin + r * cell_h
            x2, y2 = x1 + span * cell_w, y1 + cell_h
            tw = draw.textlength(text, font=font)
            draw.text(((x1 + x2 - tw) / 2, y1 + 12), text, fill=(0, 0, 0), font=font)
            if ruled:
                draw.rectangle([x1, y1, x2, y2], outline=(0, 0, 0), width=2)
            cells.append(f'<td colspan="{span}">{text}</td>' if span > 1 else f"<td>{text}</td>")
            c += span
        html_rows.append("<tr>" + "".join(cells) + "</tr>")
    if not ruled:  # a rule under the header only, as borderless tables often have
        draw.line([margin, margin + cell_h, width - margin, margin + cell_h], fill=(0, 0, 0),
                  width=2)
    image = cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)
    html = "<html><body><table>" + "".join(html_rows) + "</table></body></html>"
    kind = ("ruled" if ruled else "borderless") + ("-span" if span_header else "")
    return Table(image, html, f"table_{seed}_{rows}x{cols}_{kind}")


# --- TEDS --------------------------------------------------------------------------------------

class _Node:
    def __init__(self, tag: str, colspan: int = 1, rowspan: int = 1,
                 content: Optional[List[str]] = None):
        self.tag, self.colspan, self.rowspan = tag, colspan, rowspan
        self.content = content or []
        self.children: List[_Node] = []


class _TreeBuilder(HTMLParser):
    """HTML → tree of table elements; text inside a td becomes its content (characters)."""

    def __init__(self):
        super().__init__()
        self.root = _Node("root")
        self.stack = [self.root]

    # thead/tbody are dropped on both sides: the generated tables carry no header semantics,
    # and SLANet (PubTabNet) emits them where SLANet_plus does not.
    def handle_starttag(self, tag, attrs):
        if tag not in ("table", "tr", "td"):
            return
        attrs = dict(attrs)
        node = _Node(tag, int(attrs.get("colspan") or 1), int(attrs.get("rowspan") or 1))
        self.stack[-1].children.append(node)
        self.stack.append(node)

    def handle_endtag(self, tag):
        if tag in ("table", "tr", "td") and self.stack[-1].tag == tag:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack[-1].tag == "td":
            self.stack[-1].content.extend(data.strip())


def _tree(html: str, structure_only: bool) -> _Node:
    builder = _TreeBuilder()
    builder.feed(html)
    table = next(_walk(builder.root, "table"), None) or _Node("table")
    if structure_only:
        for node in _walk(table, "td"):
            node.content = []
    return table


def _walk(node: _Node, tag: str):
    if node.tag == tag:
        yield node
    for child in node.children:
        yield from _walk(child, tag)


def _size(node: _Node) -> int:
    return 1 + sum(_size(c) for c in node.children)


def _levenshtein(a, b) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def teds(predicted_html: str, true_html: str, structure_only: bool = False) -> float:
    """TEDS in [0, 1] (1 = identical tables)."""
    from apted import APTED, Config

    class _Costs(Config):
        def rename(self, a, b):
            if a.tag != b.tag or a.colspan != b.colspan or a.rowspan != b.rowspan:
                return 1.0
            if a.tag == "td" and (a.content or b.content):
                return _levenshtein(a.content, b.content) / max(len(a.content), len(b.content))
            return 0.0

        def children(self, node):
            return node.children

    a, b = _tree(predicted_html, structure_only), _tree(true_html, structure_only)
    distance = APTED(a, b, _Costs()).compute_edit_distance()
    return 1.0 - distance / max(_size(a), _size(b))
