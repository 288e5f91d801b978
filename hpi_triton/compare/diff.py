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
        if key == "masks" and _ragged(paddlex[key]):
            _compare_cropped_masks(served, paddlex[key], found)
        else:
            _walk(key, served[key], paddlex[key], tolerance, found)
    return found


def _ragged(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and len({
        (len(m), len(m[0]) if m else 0) for m in value}) > 1


def _compare_cropped_masks(served: dict, theirs: list, found: List[Difference]) -> None:
    """PaddleX 3.7 gives each instance mask cropped to its box (``int(round())`` of its
    coordinates); the served masks are whole-image [K, H, W]: compare ours cropped alike."""
    import numpy as np

    ours = np.asarray(served["masks"])
    boxes = served.get("boxes") or []
    if len(ours) != len(theirs) or len(boxes) != len(theirs):
        found.append(Difference("masks (length)", len(ours), len(theirs)))
        return
    for i, (box, mask) in enumerate(zip(boxes, theirs)):
        x1, y1, x2, y2 = (int(round(v)) for v in box["coordinate"])
        crop, want = ours[i][y1:y2, x1:x2], np.asarray(mask)
        if crop.shape != want.shape:
            found.append(Difference(f"masks[{i}] (shape)", list(crop.shape), list(want.shape)))
            continue
        count = int((crop.astype(np.int64) != want.astype(np.int64)).sum())
        if count:
            found.append(Difference(f"masks[{i}] (elements differing)",
                                    f"{count}/{crop.size}", "-"))


def _walk(path: str, ours: Any, theirs: Any, tolerance: float,
          found: List[Difference]) -> None:
    if hasattr(ours, "shape"):  # label maps, masks: numpy arrays on our side
        _compare_arrays(path, ours, theirs, tolerance, found)
        return
    theirs = _unbatched(ours, theirs)
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


def _unbatched(ours: Any, theirs: Any) -> Any:
    """PaddleX's JSON keeps a batch dimension of one on some fields (image_classification's
    ``class_ids`` as ``[[...]]``): drop it where ours has none."""
    if isinstance(theirs, list) and len(theirs) == 1 and isinstance(theirs[0], list) \
            and isinstance(ours, (list, tuple)) and ours and \
            not isinstance(ours[0], (list, tuple)):
        return theirs[0]
    return theirs


def _compare_arrays(path: str, ours, theirs, tolerance: float,
                    found: List[Difference]) -> None:
    """A tensor field (label map, masks) as one difference: its shape, or the share of
    elements that differ (beyond ``tolerance`` for floats)."""
    import numpy as np

    ours = np.asarray(ours)
    try:
        theirs = np.asarray(theirs)
    except ValueError:  # ragged
        found.append(Difference(f"{path} (shape)", list(ours.shape), "ragged"))
        return
    while theirs.ndim > ours.ndim and theirs.shape[0] == 1:  # PaddleX's batch of one
        theirs = theirs[0]
    if ours.shape != theirs.shape:
        found.append(Difference(f"{path} (shape)", list(ours.shape), list(theirs.shape)))
        return
    if ours.dtype.kind == "f" or theirs.dtype.kind == "f":
        differ = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)) > tolerance
    else:
        differ = ours.astype(np.int64) != theirs.astype(np.int64)
    count = int(differ.sum())
    if count:
        found.append(Difference(f"{path} (elements differing)",
                                f"{count}/{differ.size} ({100 * count / differ.size:.3f}%)",
                                "-"))


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
