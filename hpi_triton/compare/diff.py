"""Field-by-field differences between a served result and PaddleX's for the same input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

# Fields that describe the call, not the result (paths, fonts for drawing, echoed settings).
IGNORED = frozenset({"input_path", "page_index", "vis_fonts", "text_det_params",
                     "text_type", "textline_orientation_angles", "model_settings"})
#: Differences listed per input at most (the count is always exact).
MAX_LISTED = 50


@dataclass
class Difference:
    """One field that differs: its path (``rec_texts[3]``) and both values."""

    field: str
    served: Any
    paddlex: Any

    def __str__(self) -> str:
        return f"{self.field}: served {_short(self.served)} != PaddleX {_short(self.paddlex)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def compare_results(served: dict, paddlex: dict, tolerance: float = 1e-3) -> List[Difference]:
    """Differences between the fields both results have (:data:`IGNORED` aside): numbers
    equal within ``tolerance`` (ints and booleans exactly), strings exactly, lists element by
    element (a length difference is one difference)."""
    found: List[Difference] = []
    for key in sorted(set(served) & set(paddlex) - IGNORED):
        _walk(key, served[key], paddlex[key], tolerance, found)
    return found


def _walk(path: str, ours: Any, theirs: Any, tolerance: float,
          found: List[Difference]) -> None:
    if hasattr(ours, "tolist"):  # label maps, masks: numpy arrays on our side
        ours = ours.tolist()
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) & set(theirs) - IGNORED):
            _walk(f"{path}.{key}", ours[key], theirs[key], tolerance, found)
    elif isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)):
        if len(ours) != len(theirs):
            found.append(Difference(f"{path} (length)", len(ours), len(theirs)))
        for i, (a, b) in enumerate(zip(ours, theirs)):
            _walk(f"{path}[{i}]", a, b, tolerance, found)
    elif isinstance(ours, bool) or isinstance(theirs, bool):
        if ours != theirs:
            found.append(Difference(path, ours, theirs))
    elif isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        if isinstance(ours, int) and isinstance(theirs, int):
            same = ours == theirs
        else:
            same = abs(float(ours) - float(theirs)) <= tolerance
        if not same:
            found.append(Difference(path, ours, theirs))
    elif ours != theirs:
        found.append(Difference(path, ours, theirs))


def ocr_line_stats(pairs: Sequence[Tuple[Optional[dict], Optional[dict]]]):
    """(text lines identical, boxes identical, PaddleX's line count) over OCR-like result
    pairs (served, PaddleX), or None when none has ``rec_texts``; lines are matched by
    position, so a missing or extra line counts as different."""
    texts = boxes = total = 0
    seen = False
    for ours, theirs in pairs:
        if not ours or not theirs or "rec_texts" not in theirs:
            continue
        seen = True
        want_texts, want_polys = theirs["rec_texts"], _listed(theirs.get("rec_polys"))
        got_texts, got_polys = _listed(ours.get("rec_texts")), _listed(ours.get("rec_polys"))
        total += len(want_texts)
        texts += sum(a == b for a, b in zip(got_texts, want_texts))
        boxes += sum(_same_poly(a, b) for a, b in zip(got_polys, want_polys))
    return (texts, boxes, total) if seen else None


def _listed(value) -> list:
    if value is None:
        return []
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _same_poly(a, b) -> bool:
    if hasattr(a, "tolist"):
        a = a.tolist()
    return [[int(v) for v in p] for p in a] == [[int(v) for v in p] for p in b]
