"""Checks on drawn results (``Prediction.draw`` / ``hpi_triton.visualize``)."""

from __future__ import annotations

import numpy as np

from hpi_triton.visualize import draw_result


def assert_drawn(image_bgr: np.ndarray, result: dict, changed_fraction: float = 0.001):
    """Draw ``result`` on the BGR input the server was sent and check the picture is a real
    one: RGB uint8, at least the input's size, not blank, and different from the input in at
    least ``changed_fraction`` of its pixels (something was drawn). Returns the picture."""
    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1]) if image_bgr.ndim == 3 else \
        np.repeat(image_bgr[:, :, None], 3, axis=2)
    drawn = draw_result(rgb, result)
    assert drawn.dtype == np.uint8 and drawn.ndim == 3 and drawn.shape[2] == 3
    assert drawn.shape[0] >= rgb.shape[0] and drawn.shape[1] >= rgb.shape[1]
    assert drawn.std() > 5, "the drawn picture is blank"
    h, w = min(rgb.shape[0], drawn.shape[0]), min(rgb.shape[1], drawn.shape[1])
    differs = np.any(drawn[:h, :w] != rgb[:h, :w], axis=2).mean()
    extra = drawn.shape[1] > rgb.shape[1] or drawn.shape[0] > rgb.shape[0]
    assert differs >= changed_fraction or extra, f"nothing drawn ({differs:.5f} changed)"
    return drawn
