"""Seal text: curved-polygon DB post-processing and curved-text rectification, as PaddleX.

PaddleX's seal OCR (``text_type: seal``) differs from general OCR in three steps, all here:
the detector's ``DBPostProcess`` runs with ``box_type: poly`` (contour polygons instead of
quads), polygons are ordered by their top edge, and each polygon is cropped by
``CropByPolys(det_box_type="poly")``: its min-area rectangle when the polygon is nearly that
rectangle, otherwise the two long sides are resampled to 15 points each and the strip between
them is straightened piece by piece with homographies (PaddleX's ``AutoRectifier`` in
``homography`` mode) and stitched. Shipped in the graphs' runtime package; imports
numpy, OpenCV, pyclipper and shapely only.
"""

from __future__ import annotations

from typing import List, Tuple

import cv2
import numpy as np
from numpy.linalg import norm

from .ocr_ops import (
        _box_score_fast,
        _mini_box,
        _offset_polygons,
        _scale_to_source,
        crop_quad,
        db_contours,
    )

# PaddleX's seal OCR defaults (pipelines/ocr/pipeline.py, text_type "seal").
SEAL_DEFAULTS = {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 4000,
                 "thresh": 0.2, "box_thresh": 0.6, "unclip_ratio": 0.5,
                 "use_textline_orientation": False}


# --- detection: DBPostProcess(box_type="poly") ---------------------------------------------

def db_polygons(pred: np.ndarray, src_h: int, src_w: int, thresh: float, box_thresh: float,
                unclip_ratio: float, max_candidates: int = 1000
                ) -> Tuple[List[np.ndarray], List[float]]:
    """Probability map HxW → polygons (Kx2 int, source-image coordinates) and scores."""
    min_size = 3
    height, width = pred.shape
    polys, scores = [], []
    for contour in db_contours(pred, thresh, max_candidates):
        approx = cv2.approxPolyDP(contour, 0.002 * cv2.arcLength(contour, True), True)
        points = approx.reshape((-1, 2))
        if points.shape[0] < 4:
            continue
        score = _box_score_fast(pred, points)
        if box_thresh > score:
            continue
        expanded = _offset_polygons(points, unclip_ratio)
        # PaddleX keeps a contour only when the offset gives exactly one polygon.
        if len(expanded) != 1 or len(expanded[0]) == 0:
            continue
        poly = np.array(expanded[0]).reshape(-1, 2)
        _, short_side = _mini_box(poly.reshape((-1, 1, 2)).astype(np.float32))
        if short_side < min_size + 2:
            continue
        poly = poly.astype(np.float64)
        _scale_to_source(poly, width, height, src_w, src_h)
        polys.append(poly.astype(np.int64))
        scores.append(float(score))
    return polys, scores


def sort_poly_boxes(polys: List[np.ndarray]) -> List[np.ndarray]:
    """PaddleX SortPolyBoxes: by the polygon's smallest y (numpy's default argsort)."""
    if not polys:
        return polys
    rank = np.argsort(np.array([p[:, 1].min() for p in polys]))
    return [polys[i] for i in rank]


# --- crop: CropByPolys(det_box_type="poly") ------------------------------------------------

def crop_poly(image: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """One seal-text polygon → a straightened horizontal text image."""
    from shapely.geometry import Polygon

    points = np.array(poly).astype(np.int32).reshape(-1, 2)
    rect_crop = crop_quad(image, points)
    if points.shape[0] < 4:
        return rect_crop
    shape = Polygon(points)
    if not shape.is_valid:
        return rect_crop
    rect, _ = _mini_box(points)
    box = Polygon(rect)
    iou = shape.intersection(box).area / (shape.union(box).area + 1e-10)
    if iou >= 0.7:  # nearly a rectangle: the rotated crop is enough
        return rect_crop
    sample = _merge_short_edges(points).astype(np.int32)
    if sample.ndim != 2 or sample.shape[1] != 2 or sample.shape[0] < 4:
        return rect_crop
    top, bottom = _long_sides(sample)
    top, bottom = _resample(top, 15), _resample(bottom, 15)
    if np.mean(top, axis=0)[1] - np.mean(bottom, axis=0)[1] > 0:
        top, bottom = bottom, top
    outline = np.concatenate([top, bottom]).astype(np.float32)
    if image.ndim == 2:
        image = np.stack((image,) * 3, axis=-1)
    return np.asarray(_rectify(image, outline), dtype=np.uint8)


def _merge_short_edges(line: np.ndarray) -> np.ndarray:
    """Group consecutive points joined by edges shorter than 0.9x the mean edge (the last
    group joins the first when the closing edge is short too) and keep each group's mean."""
    lengths = [norm(line[i + 1] - line[i]) for i in range(len(line) - 1)]
    mean_length = sum(lengths) / (len(lengths) + 1e-8)
    groups = [[0]]
    for i, length in enumerate(lengths):
        if length < 0.9 * mean_length:
            for group in groups:
                if i in group:
                    group.append(i + 1)
                    break
        else:
            groups.append([i + 1])
    if norm(line[0] - line[-1]) < 0.9 * mean_length:
        last = groups[-1]
        groups[0].extend(last)
        groups.remove(last)
    return np.array([tuple(np.mean(np.array([line[i] for i in g], dtype=np.float64), axis=0))
                     for g in groups])


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    """``n + 1`` points evenly spaced along the polyline ``line`` (PaddleX
    sample_points_on_bbox_bp)."""
    lengths = [norm(line[i + 1] - line[i]) for i in range(len(line) - 1)]
    total = sum(lengths)
    cumulative = np.cumsum([0.0] + lengths)
    step = total / (float(n) + 1e-8)
    edge = 0
    points = [line[0]]
    for i in range(1, n):
        position = i * step
        while edge + 1 < len(cumulative) and position >= cumulative[edge + 1]:
            edge += 1
        if edge >= len(lengths):
            break
        ratio = (position - cumulative[edge]) / lengths[edge]
        points.append(line[edge] + (line[edge + 1] - line[edge]) * ratio)
    points.append(line[-1])
    return np.array(points)


def _angle(vec1: np.ndarray, vec2: np.ndarray):
    unit1 = vec1 / (norm(vec1, axis=-1) + 1e-8).reshape((-1, 1)) if vec1.ndim > 1 else \
        vec1 / (norm(vec1, axis=-1) + 1e-8)
    unit2 = vec2 / (norm(vec2, axis=-1) + 1e-8).reshape((-1, 1)) if vec2.ndim > 1 else \
        vec2 / (norm(vec2, axis=-1) + 1e-8)
    return np.arccos(np.clip(np.sum(unit1 * unit2, axis=-1), -1.0, 1.0))


def _slope(vec) -> float:
    return abs(vec[1] / (vec[0] + 1e-8))


def _head_tail(points: np.ndarray) -> Tuple[List[int], List[int]]:
    """Indices of the polygon's head and tail edges (its two short ends): PaddleX's score of
    turning angle, distance from the centre and position, smoothed over candidate pairs."""
    if len(points) > 4:
        padded = np.vstack([points, points[0]])
        edges = padded[1:] - padded[:-1]
        count = len(edges)
        theta_sum, adjacent_theta = [], []
        for i, edge in enumerate(edges):
            neighbours = edges[[(i - 1) % count, (i + 1) % count]]
            theta_sum.append(np.sum(_angle(edge, neighbours)))
            adjacent_theta.append(_angle(neighbours[0], neighbours[1]))
        centre = np.mean(points, axis=0)
        distance = np.maximum(norm(padded[1:] - centre, axis=-1),
                              norm(padded[:-1] - centre, axis=-1))
        # The same operations in the same order as PaddleX: argmax ties must break alike.
        theta_score = np.array(theta_sum) / np.pi
        adjacent_score = np.array(adjacent_theta) / np.pi
        distance_score = distance / np.max(distance)
        score = 0.5 * theta_score + 0.15 * adjacent_score
        score += 0.35 * distance_score
        position = np.zeros(count)
        if len(points) % 2 == 0:
            position[count // 2 - 1] += 1
            position[-1] += 1
        score += 0.1 * position
        doubled = np.concatenate([score, score])
        x = np.arange(count - 3) / float(count - 4)
        gaussian = 1.0 / (np.sqrt(2.0 * np.pi) * 0.5) * np.exp(-np.power((x - 0.5) / 0.5, 2.0) / 2)
        gaussian = gaussian / np.max(gaussian)
        matrix = np.zeros((count, count - 3))
        for i in range(count):
            matrix[i, :] = score[i] + doubled[i + 2:i + count - 1] * gaussian * 0.3
        head_start, tail_increment = np.unravel_index(matrix.argmax(), matrix.shape)
        tail_start = (head_start + tail_increment + 2) % len(points)
        head_end = (head_start + 1) % len(points)
        tail_end = (tail_start + 1) % len(points)
        if head_end > tail_end:
            head_start, tail_start = tail_start, head_start
            head_end, tail_end = tail_end, head_end
        return [head_start, head_end], [tail_start, tail_end]
    if _slope(points[1] - points[0]) + _slope(points[3] - points[2]) < \
            _slope(points[2] - points[1]) + _slope(points[0] - points[3]):
        horizontal, vertical = [[0, 1], [2, 3]], [[3, 0], [1, 2]]
    else:
        horizontal, vertical = [[3, 0], [1, 2]], [[0, 1], [2, 3]]
    vertical_sum = norm(points[vertical[0][0]] - points[vertical[0][1]]) + \
        norm(points[vertical[1][0]] - points[vertical[1][1]])
    horizontal_sum = norm(points[horizontal[0][0]] - points[horizontal[0][1]]) + \
        norm(points[horizontal[1][0]] - points[horizontal[1][1]])
    if vertical_sum > horizontal_sum * 2.0:
        return horizontal[0], horizontal[1]
    return vertical[0], vertical[1]


def _long_sides(points: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The polygon's two long sides, each from its head edge to its tail edge."""
    head, tail = _head_tail(points)
    padded = np.vstack([points, points])
    if tail[1] < 1:
        tail[1] = len(points)
    return padded[head[1]:tail[1]], padded[tail[1]:head[1] + len(points)]


# --- curved-text rectifier, homography mode ------------------------------------------------

def _rectify(image: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """Straighten the strip bounded by ``outline`` (top side then bottom side, 2n points);
    on any failure, the outline's bounding-box crop (as PaddleX)."""
    if len(outline) < 10 or len(outline) % 2:
        return _bounding_crop(image, outline)
    try:
        return _piecewise_homography(image, outline)
    except Exception:  # noqa: BLE001 - PaddleX falls back on any rectifier error too
        return _bounding_crop(image, outline)


def _bounding_crop(image: np.ndarray, outline: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1 = int(np.min(outline[:, 0])), int(np.min(outline[:, 1]))
    x2, y2 = int(np.max(outline[:, 0])), int(np.max(outline[:, 1]))
    x1, x2 = np.clip(x1, 0, w - 1), np.clip(x2, 0, w - 1)
    y1, y2 = np.clip(y1, 0, h - 1), np.clip(y2, 0, h - 1)
    return image[y1:y2, x1:x2, :].copy()


def _flat_layout(poly: np.ndarray) -> np.ndarray:
    """Where each outline point goes on a flat strip: top points along y=0 spaced by the
    mean length of opposite top/bottom segments, bottom points back along y=height (the
    mean top-to-bottom distance); centred. Returns Nx2."""
    flat = poly.reshape(-1)
    n = len(flat) // 2
    steps = [_length(flat[2 * i] - flat[2 * (i - 1)], flat[2 * i + 1] - flat[2 * (i - 1) + 1])
             for i in range(1, n)]
    heights = [_length(flat[2 * i] - flat[len(flat) - 1 - (2 * i + 1)],
                       flat[2 * i + 1] - flat[len(flat) - 1 - 2 * i]) for i in range(n // 2)]
    steps = [(steps[i] + steps[len(steps) - 1 - i]) / 2 for i in range(len(steps) // 2)]
    height = np.around(np.mean(heights))
    coords = [0, 0]
    for i in range(n // 2 - 1):
        coords += [coords[-2] + steps[i], 0]
    top = list(coords)
    for i in range(n // 2):
        coords += [top[len(top) - 2 * i - 2], height]
    rect = np.array(coords, dtype=np.float64).reshape(-1, 2)
    rect[:, 0] -= (rect[:, 0].max() - rect[:, 0].min()) / 2
    rect[:, 1] -= (rect[:, 1].max() - rect[:, 1].min()) / 2
    return rect


def _length(dx, dy):
    # sqrt of squares, not np.hypot: PaddleX's rounding, so strip sizes match it exactly
    return np.sqrt(dx ** 2 + dy ** 2)


def _piecewise_homography(image: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """PaddleX CurveTextRectifier(mode="homography"): each quad between consecutive outline
    points is warped to its flat-strip size and the pieces are stitched left to right;
    vertical text (bounding box 1.5x taller than wide) is laid flat first and turned back."""
    pts = outline.reshape(-1, 2)
    width = int(np.max(pts[:, 0])) - int(np.min(pts[:, 0]))
    height = int(np.max(pts[:, 1])) - int(np.min(pts[:, 1]))
    horizontal = not height / width > 1.5
    if horizontal:
        image_points, flat = pts, _flat_layout(pts)
    else:
        rolled = np.array(pts.reshape(-1).tolist()[2:] + pts.reshape(-1).tolist()[:2]
                          ).reshape(-1, 2)
        turned = np.zeros(rolled.shape, dtype=np.float32)
        turned[:, 0] = rolled[:, 1]
        turned[:, 1] = image.shape[0] - rolled[:, 0] - 1
        lying = _flat_layout(turned)
        flat = np.stack([-lying[:, 1], lying[:, 0]], axis=1)
        image_points = rolled
    pieces = []
    for i in range(len(image_points) // 2 - 1):
        src = np.zeros((4, 2), np.float32)
        dst = np.zeros((4, 2), np.float32)
        src[0:2] = image_points[i:i + 2]
        src[2:4] = image_points[::-1][i:i + 2][::-1]
        dst[0:2] = flat[i:i + 2]
        dst[2:4] = flat[::-1][i:i + 2][::-1]
        if horizontal:
            piece_w, piece_h = abs(dst[1, 0] - dst[0, 0]), abs(dst[3, 1] - dst[0, 1])
        else:
            piece_w, piece_h = abs(dst[1, 1] - dst[0, 1]), abs(dst[3, 0] - dst[0, 0])
        target = np.float32([[0, 0], [piece_w, 0], [piece_w, piece_h], [0, piece_h]])
        matrix = cv2.getPerspectiveTransform(src, target)
        pieces.append(cv2.warpPerspective(image, matrix, (int(piece_w), int(piece_h)),
                                          borderMode=cv2.BORDER_CONSTANT,
                                          flags=cv2.INTER_LINEAR))
    out = np.zeros((max(p.shape[0] for p in pieces), sum(p.shape[1] for p in pieces), 3),
                   np.uint8)
    x = 0
    for piece in pieces:
        out[:piece.shape[0], x:x + piece.shape[1]] = piece
        x += piece.shape[1]
    return out if horizontal else np.rot90(out, 3)
