"""Seal OCR geometry (seal_ops) on synthetic inputs: DB polygons, ordering, the poly crop."""

from __future__ import annotations

import cv2
import numpy as np

from hpi_triton.python_backend.ocr import ocr_ops, seal_ops


def _arc_band(centre=(200, 200), inner=110, outer=150, start=200, end=340, steps=24):
    """A polygon around an arc band (angles in degrees, image coordinates): the outer edge
    left to right, then the inner edge back."""
    angles = np.radians(np.linspace(start, end, steps))
    outer_pts = np.stack([centre[0] + outer * np.cos(angles),
                          centre[1] + outer * np.sin(angles)], axis=1)
    inner_pts = np.stack([centre[0] + inner * np.cos(angles[::-1]),
                          centre[1] + inner * np.sin(angles[::-1])], axis=1)
    return np.concatenate([outer_pts, inner_pts]).astype(np.int32)


def test_db_polygons_follow_a_curved_region():
    prob = np.zeros((400, 400), np.float32)
    cv2.fillPoly(prob, [_arc_band()], 0.9)
    polys, scores = seal_ops.db_polygons(prob, 800, 800, 0.2, 0.6, 0.5)
    assert len(polys) == 1 and scores[0] > 0.85
    # A curve, not a quad; scaled to the 800x800 source.
    assert len(polys[0]) > 8
    assert polys[0][:, 0].max() > 600 and polys[0][:, 1].min() < 200
    # General OCR's quads score the arc's min-area box, mostly empty: below box_thresh.
    assert ocr_ops.db_postprocess(prob, 800, 800, 0.2, 0.6, 0.5) == ([], [])


def test_db_polygons_drop_low_scores_and_specks():
    prob = np.zeros((200, 200), np.float32)
    cv2.rectangle(prob, (10, 10), (80, 40), 0.4, -1)   # above thresh, below box_thresh
    cv2.rectangle(prob, (120, 120), (121, 121), 0.9, -1)  # too small
    assert seal_ops.db_polygons(prob, 200, 200, 0.2, 0.6, 0.5) == ([], [])


def test_sort_poly_boxes_by_top():
    a = np.array([[0, 50], [10, 50], [10, 60], [0, 60], [5, 55]])
    b = np.array([[0, 5], [10, 5], [10, 15], [0, 15], [5, 10]])
    assert [p[0, 1] for p in seal_ops.sort_poly_boxes([a, b])] == [5, 50]
    assert seal_ops.sort_poly_boxes([]) == []


def test_crop_poly_straightens_an_arc():
    """Stripes drawn radially across an arc band come out as upright stripes along a wide,
    short strip (the polygon as the detector's post-processing gives it)."""
    prob = np.zeros((400, 400), np.float32)
    cv2.fillPoly(prob, [_arc_band()], 0.9)
    (poly,), _ = seal_ops.db_polygons(prob, 400, 400, 0.2, 0.6, 0.5)
    image = np.full((400, 400, 3), 255, np.uint8)
    for degrees in range(205, 340, 10):
        t = np.radians(degrees)
        cv2.line(image, (int(200 + 105 * np.cos(t)), int(200 + 105 * np.sin(t))),
                 (int(200 + 155 * np.cos(t)), int(200 + 155 * np.sin(t))), (0, 0, 0), 3)
    crop = seal_ops.crop_poly(image, poly)
    h, w = crop.shape[:2]
    arc_length = np.radians(140) * 130  # along the band's middle
    assert 0.9 * arc_length < w < 1.1 * arc_length and 40 < h < 70
    # Each column is mostly one colour top to bottom: the stripes are upright.
    dark = crop[5:-5].min(axis=2) < 128
    column_share = dark.mean(axis=0)
    assert ((column_share < 0.2) | (column_share > 0.8)).mean() > 0.85
    assert 10 <= np.count_nonzero(np.diff((column_share > 0.5).astype(int)) == 1) <= 16


def test_crop_poly_near_rectangles_and_invalid_polygons_use_the_rotated_crop():
    image = np.random.default_rng(0).integers(0, 255, (200, 300, 3), np.uint8)
    rect = np.array([[20, 30], [120, 30], [220, 31], [220, 80], [120, 80], [20, 80]])
    np.testing.assert_array_equal(seal_ops.crop_poly(image, rect),
                                  ocr_ops.crop_quad(image, rect))
    bowtie = np.array([[20, 20], [200, 120], [200, 20], [20, 120], [10, 70]])
    np.testing.assert_array_equal(seal_ops.crop_poly(image, bowtie),
                                  ocr_ops.crop_quad(image, bowtie))
