"""OCR pre- and post-processing with PaddleX's semantics, vectorised with numpy/OpenCV.

Copied next to the OCR pipeline's ``model.py`` in a generated repository (and imported by the
in-process reference in tests), so it imports nothing from hpi_triton: numpy, OpenCV and
pyclipper (the polygon-offset library PaddleX's DB post-processing uses).
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from ..common.image_io import (
        DEFAULT_MAX_PIXELS,
        ImageError,
        decode_image,
        normalize_array,
        normalize_chw,
    )

__all__ = ["DEFAULT_MAX_PIXELS", "ImageError", "decode_image", "normalize_array",
           "normalize_chw"]


# --- detection -----------------------------------------------------------------------------

def det_resize(image: np.ndarray, limit_side_len: int, limit_type: str,
               max_side_limit: int) -> Tuple[np.ndarray, float, float]:
    """PaddleX DetResizeForTest (type 0): returns the resized image and (ratio_h, ratio_w)."""
    h, w = image.shape[:2]
    if h + w < 64:
        padded = np.zeros((max(32, h), max(32, w), 3), np.uint8)
        padded[:h, :w] = image
        image = padded
        h, w = image.shape[:2]
    if limit_type == "max":
        ratio = float(limit_side_len) / max(h, w) if max(h, w) > limit_side_len else 1.0
    elif limit_type == "min":
        ratio = float(limit_side_len) / min(h, w) if min(h, w) < limit_side_len else 1.0
    elif limit_type == "resize_long":
        ratio = float(limit_side_len) / max(h, w)
    else:
        raise ValueError(f"limit_type {limit_type!r}; expected 'min', 'max' or 'resize_long'")
    resize_h, resize_w = int(h * ratio), int(w * ratio)
    if max(resize_h, resize_w) > max_side_limit:
        ratio = float(max_side_limit) / max(resize_h, resize_w)
        resize_h, resize_w = int(resize_h * ratio), int(resize_w * ratio)
    resize_h = max(int(round(resize_h / 32) * 32), 32)
    resize_w = max(int(round(resize_w / 32) * 32), 32)
    if resize_h == h and resize_w == w:
        return image, 1.0, 1.0
    return cv2.resize(image, (resize_w, resize_h)), resize_h / float(h), resize_w / float(w)


def _mini_box(contour) -> Tuple[np.ndarray, float]:
    rect = cv2.minAreaRect(contour)
    points = sorted(list(cv2.boxPoints(rect)), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    return np.array([points[i1], points[i2], points[i3], points[i4]]), min(rect[1])


def _box_score_fast(pred: np.ndarray, box: np.ndarray) -> float:
    h, w = pred.shape
    xmin = max(0, min(math.floor(box[:, 0].min()), w - 1))
    xmax = max(0, min(math.ceil(box[:, 0].max()), w - 1))
    ymin = max(0, min(math.floor(box[:, 1].min()), h - 1))
    ymax = max(0, min(math.ceil(box[:, 1].max()), h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.uint8)
    shifted = box - np.array([xmin, ymin], dtype=box.dtype)
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return cv2.mean(pred[ymin:ymax + 1, xmin:xmax + 1], mask)[0]


def _offset_polygons(box: np.ndarray, unclip_ratio: float) -> list:
    """DB's unclip: ``box`` grown by area * ratio / perimeter with pyclipper (round joins);
    every polygon the offset gives."""
    import pyclipper

    area = cv2.contourArea(box)
    length = cv2.arcLength(box, True)
    distance = area * unclip_ratio / length
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box, pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    return offset.Execute(distance)


def _unclip(box: np.ndarray, unclip_ratio: float) -> np.ndarray:
    expanded = _offset_polygons(box, unclip_ratio)
    return np.array(expanded[0]) if len(expanded) else np.zeros((0, 2))


def _scale_to_source(points: np.ndarray, width: int, height: int, src_w: int,
                     src_h: int) -> None:
    """Map points of the HxW probability map onto the source image in place: scaled,
    rounded, clipped to [0, src_w] x [0, src_h] (in ``points``' own dtype)."""
    points[:, 0] = np.clip(np.round(points[:, 0] * (src_w / width)), 0, src_w)
    points[:, 1] = np.clip(np.round(points[:, 1] * (src_h / height)), 0, src_h)


def db_contours(pred: np.ndarray, thresh: float, max_candidates: int):
    """DB's first step, shared by quad and polygon output: the binarized map's contours
    (at most ``max_candidates``)."""
    bitmap = (pred > thresh).astype(np.uint8) * 255
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    return contours[:max_candidates]


def db_postprocess(pred: np.ndarray, src_h: int, src_w: int, thresh: float,
                   box_thresh: float, unclip_ratio: float,
                   max_candidates: int = 1000) -> Tuple[List[np.ndarray], List[float]]:
    """PaddleX DBPostProcess (quad boxes, fast score): probability map HxW → boxes, scores."""
    min_size = 3
    height, width = pred.shape
    boxes, scores = [], []
    for contour in db_contours(pred, thresh, max_candidates):
        points, short_side = _mini_box(contour)
        if short_side < min_size:
            continue
        score = _box_score_fast(pred, points.reshape(-1, 2))
        if box_thresh > score:
            continue
        expanded = _unclip(points, unclip_ratio)
        if expanded.shape[0] == 0:
            continue
        box, short_side = _mini_box(expanded.reshape(-1, 1, 2).astype(np.float32))
        if short_side < min_size + 2:
            continue
        _scale_to_source(box, width, height, src_w, src_h)
        boxes.append(box.astype(np.int16))
        scores.append(float(score))
    return boxes, scores


def sort_quad_boxes(boxes: List[np.ndarray]) -> List[np.ndarray]:
    """PaddleX SortQuadBoxes: top to bottom, then left to right within 10 px rows."""
    ordered = sorted(boxes, key=lambda b: (b[0][1], b[0][0]))
    for i in range(len(ordered) - 1):
        for j in range(i, -1, -1):
            if abs(ordered[j + 1][0][1] - ordered[j][0][1]) < 10 and \
                    ordered[j + 1][0][0] < ordered[j][0][0]:
                ordered[j], ordered[j + 1] = ordered[j + 1], ordered[j]
            else:
                break
    return ordered


def crop_quad(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """PaddleX CropByPolys (quad): min-area rect, perspective crop, rotate tall crops."""
    points, _ = _mini_box(np.array(box).astype(np.int32))
    points = points.astype(np.float32)
    width = int(max(np.linalg.norm(points[0] - points[1]), np.linalg.norm(points[2] - points[3])))
    height = int(max(np.linalg.norm(points[0] - points[3]), np.linalg.norm(points[1] - points[2])))
    if width <= 0 or height <= 0:
        return np.zeros((0, 0, 3), np.uint8)
    target = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(points, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE,
                               flags=cv2.INTER_CUBIC)
    if crop.shape[0] * 1.0 / crop.shape[1] >= 1.5:
        crop = np.rot90(crop)
    return crop


def boxes_from_polys(polys: List[np.ndarray]) -> List[List[int]]:
    """[x_min, y_min, x_max, y_max] per polygon (PaddleX convert_points_to_boxes)."""
    return [[int(p[:, 0].min()), int(p[:, 1].min()), int(p[:, 0].max()), int(p[:, 1].max())]
            for p in polys]


# --- text-line orientation ---------------------------------------------------------------

def cls_preprocess(crops: List[np.ndarray], width: int, height: int, mean, std,
                   scale: float) -> np.ndarray:
    """PaddleX ResizeImage(size=[w, h]) + NormalizeImage + ToCHW for a batch of BGR crops.

    PaddleX classifies text-line orientation with its image classification predictor, whose
    ReadImage turns the pipeline's BGR crops into RGB first; fed BGR, the classifier flipped
    long lines PaddleX keeps upright (1 line in 36 on the realistic bench pages).
    """
    return np.stack([normalize_chw(cv2.cvtColor(cv2.resize(c, (width, height)),
                                                cv2.COLOR_BGR2RGB), mean, std, scale)
                     for c in crops])


# --- recognition ---------------------------------------------------------------------------

REC_HEIGHT = 48
REC_BASE_WIDTH = 320
REC_MAX_WIDTH = 3200


def rec_width(crop: np.ndarray) -> int:
    """The width PaddleX's OCRReisizeNormImg gives a crop: max(320, ceil(48 * w / h))."""
    h, w = crop.shape[:2]
    ratio = max(REC_BASE_WIDTH / REC_HEIGHT, w / float(h))
    return min(int(REC_HEIGHT * ratio), REC_MAX_WIDTH)


def rec_preprocess(crop: np.ndarray) -> np.ndarray:
    """One crop → 3x48xW float32 in [-1, 1] (PaddleX OCRReisizeNormImg)."""
    h, w = crop.shape[:2]
    target_w = rec_width(crop)
    if target_w >= REC_MAX_WIDTH:
        resized, resized_w = cv2.resize(crop, (REC_MAX_WIDTH, REC_HEIGHT)), REC_MAX_WIDTH
    else:
        resized_w = min(int(math.ceil(REC_HEIGHT * w / float(h))), target_w)
        resized = cv2.resize(crop, (resized_w, REC_HEIGHT))
    out = np.zeros((3, REC_HEIGHT, target_w), np.float32)
    out[:, :, :resized_w] = resized.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return out


# In width_buckets batching, batch widths are rounded up to a multiple of this: engines that
# specialise on input shape (OpenVINO, TensorRT) then see a few dozen shapes instead of one
# per batch; the extra columns are zero padding.
REC_WIDTH_BUCKET = 160
#: How recognition crops are batched (``text_rec_batching``): ``paddlex`` (default) exactly as
#: PaddleX 3.7's OCR pipeline, ``width_buckets`` faster, with results that may differ.
REC_BATCHING = ("paddlex", "width_buckets")


def rec_batches(crops: List[np.ndarray], batch_size: int,
                batching: str = "paddlex") -> List[Tuple[List[int], np.ndarray]]:
    """Recognition batches of a page's crops: [(crop indices, float32 NCHW batch)].

    ``paddlex``: as PaddleX 3.7's OCR pipeline and TextRecPredictor: the crops sorted by
    aspect ratio (a stable sort), taken ``batch_size`` at a time (PaddleX's
    ``TextRecognition.batch_size``: 6 in its OCR pipeline, 1 in its table and seal
    pipelines), each resized to its own width (OCRReisizeNormImg) and zero-padded to the
    widest of its batch (ToBatch). A line's text can depend on that padding, so identical
    results need identical batches.

    ``width_buckets``: sorted the same way, but a batch only holds crops whose widths round
    up to the same multiple of :data:`REC_WIDTH_BUCKET`, padded to that: PaddleX's batches
    computed 1.6x the columns the lines have (48 generated pages, 5 lines each), this 30%
    less recognition time; texts may differ from PaddleX's where a space or character is
    borderline (bench/RESULTS.md).
    """
    if batching not in REC_BATCHING:
        raise ValueError(f"text_rec_batching={batching!r}; expected one of {REC_BATCHING}")
    order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / float(crops[i].shape[0]))
    images = {i: rec_preprocess(crops[i]) for i in order}

    def bucket(index):
        width = images[index].shape[2]
        return min(-(-width // REC_WIDTH_BUCKET) * REC_WIDTH_BUCKET, REC_MAX_WIDTH)

    groups: List[List[int]] = []
    if batching == "paddlex":
        groups = [order[k:k + batch_size] for k in range(0, len(order), batch_size)]
    else:
        for index in order:
            if groups and len(groups[-1]) < batch_size and \
                    bucket(groups[-1][0]) == bucket(index):
                groups[-1].append(index)
            else:
                groups.append([index])
    batches = []
    for members in groups:
        width = (max(images[i].shape[2] for i in members) if batching == "paddlex"
                 else bucket(members[0]))
        batch = np.zeros((len(members), 3, REC_HEIGHT, width), np.float32)
        for k, index in enumerate(members):
            batch[k, :, :, :images[index].shape[2]] = images[index]
        batches.append((members, batch))
    return batches


class CTCDecoder:
    """PaddleX CTCLabelDecode: argmax, collapse repeats, drop blank (index 0); score = mean
    probability of the kept steps (0 when none)."""

    def __init__(self, characters: Sequence[str], use_space_char: bool = True):
        chars = list(characters) + ([" "] if use_space_char else [])
        self.characters = np.array(["blank"] + chars, dtype=object)

    def __call__(self, probs: np.ndarray) -> List[Tuple[str, float]]:
        indices = probs.argmax(axis=-1)
        maxima = probs.max(axis=-1)
        keep = indices != 0
        keep[:, 1:] &= indices[:, 1:] != indices[:, :-1]
        results = []
        for row in range(indices.shape[0]):
            selected = indices[row][keep[row]]
            if selected.size and selected.max() >= len(self.characters):
                raise ValueError(f"the recognition model has {probs.shape[-1]} classes but the "
                                 f"character dict has {len(self.characters)} entries")
            text = "".join(self.characters[selected])
            conf = maxima[row][keep[row]]
            results.append((text, float(conf.mean()) if conf.size else 0.0))
        return results


def polys_to_lists(polys: List[np.ndarray]) -> List[List[List[int]]]:
    return [np.asarray(p).astype(int).tolist() for p in polys]


def ocr_result(dt_polys, rec_texts, rec_scores, rec_polys, angles) -> Dict:
    """PaddleX OCR result fields, JSON-serialisable."""
    return {
        "dt_polys": polys_to_lists(dt_polys),
        "textline_orientation_angles": list(angles),
        "rec_texts": list(rec_texts),
        "rec_scores": [float(s) for s in rec_scores],
        "rec_polys": polys_to_lists(rec_polys),
        "rec_boxes": boxes_from_polys([np.asarray(p) for p in rec_polys]),
    }
