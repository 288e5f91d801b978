"""The verification error measure and sample shapes."""

import numpy as np

from hpi_triton.core.model_dir import ModelSource, TensorSpec
from hpi_triton.core.verify import relative_error
from hpi_triton.generator.samples import make_inputs, sample_shapes


def test_relative_error():
    ref = np.array([0.0, 2.0, -4.0])
    assert relative_error(ref.copy(), ref) == 0.0
    assert np.isclose(relative_error(ref + [0, 0, 4e-4], ref), 1e-4)
    assert relative_error(ref[:2], ref) == float("inf")
    assert relative_error(np.array([np.nan, 2.0, -4.0]), ref) == float("inf")


def _source(**kw):
    return ModelSource(path=None, model_name="m", format="onnx",
                       inputs=[TensorSpec("x", "float32", (-1, 3, 48, -1))],
                       outputs=[TensorSpec("y", "float32", (-1, -1, 10))], **kw)


def test_sample_shapes_from_ranges_and_fallback():
    ranged = _source(dynamic_shapes={"x": [[1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200]]})
    assert sample_shapes(ranged, 8) == [{"x": (1, 3, 48, 160)}, {"x": (1, 3, 48, 320)},
                                        {"x": (2, 3, 48, 320)}]
    assert sample_shapes(_source(), 8) == [{"x": (1, 3, 48, 320)}, {"x": (2, 3, 48, 160)}]


def test_inputs_are_deterministic():
    source = _source()
    a = make_inputs(source, {"x": (1, 3, 48, 32)}, seed=3)["x"]
    b = make_inputs(source, {"x": (1, 3, 48, 32)}, seed=3)["x"]
    assert a.dtype == np.float32 and np.array_equal(a, b)


def test_outputs_near_zero_are_compared_on_an_absolute_floor():
    # A detection map of a noise sample: ~0 everywhere (PP-OCRv4 det, 32x32, measured 3e-8);
    # float rounding on the GPU gave 0.0 there, a "relative error" of 1 on its own scale.
    reference = np.full((1, 1, 4, 4), 3e-8, np.float32)
    assert relative_error(np.zeros_like(reference), reference) < 1e-5
    # A real difference on that tiny scale still fails the fp32 tolerance (1e-4).
    assert relative_error(reference + 2e-6, reference) > 1e-4
