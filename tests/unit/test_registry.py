"""The backend registry: aliases, duplicates refused, valid names listed, availability."""

import pytest

from hpi_triton.errors import BackendUnavailableError, UnknownBackendError
from hpi_triton.triton_models.backends import BackendRegistry, Device, registry
from hpi_triton.triton_models.backends.onnx_runtime import OnnxRuntimeBackend
from hpi_triton.triton_models.backends.tensorrt import TensorRTBackend


def test_paddlex3_aliases_resolve():
    assert registry.canonical("paddle") == "paddle_infer"
    assert registry.canonical("onnxruntime") == "onnx_runtime"
    assert registry.canonical("OpenVINO") == "openvino"


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownBackendError) as info:
        registry.canonical("tensorflow")
    for name in ("paddle_infer", "paddle_tensorrt", "openvino", "onnx_runtime", "tensorrt"):
        assert name in str(info.value)


def test_duplicates_are_refused():
    reg = BackendRegistry()
    reg.register(OnnxRuntimeBackend)
    with pytest.raises(ValueError, match="already registered"):
        reg.register(OnnxRuntimeBackend)


def test_uninstalled_backend_is_known_but_unavailable():
    reg = BackendRegistry()
    reg.register(TensorRTBackend)
    if TensorRTBackend.installed():
        pytest.skip("tensorrt is installed here")
    assert "tensorrt" not in reg.names()
    with pytest.raises(BackendUnavailableError, match="pip install tensorrt"):
        reg.canonical("tensorrt")


def test_gpu_backends_report_why_unusable_on_cpu():
    reason = registry.get("paddle_tensorrt").unavailable_reason(Device("cpu"), "fp32")
    assert reason and "does not run on cpu" in reason
    reason = registry.get("onnx_runtime").unavailable_reason(Device("cpu"), "bf16")
    assert reason and "precision bf16" in reason


def test_device_parsing():
    assert Device.parse("gpu:1") == Device("gpu", 1)
    assert str(Device.parse("cpu")) == "cpu"
    with pytest.raises(Exception, match="--device"):
        Device.parse("cuda")


def test_measured_selection_breaks_ties_by_the_fallback_order():
    from hpi_triton.generator.selection import TIE_TOLERANCE, pick_measured

    # Sorted fastest first, as the build hands them over.
    assert pick_measured([(100.0, "paddle_infer"), (101.0, "openvino")], "cpu") == 1
    assert pick_measured([(100.0, "paddle_infer"), (100 * (1 + TIE_TOLERANCE) + 1, "openvino")],
                         "cpu") == 0
    assert pick_measured([(10.0, "onnx_runtime"), (10.2, "openvino"), (10.1, "paddle_infer")],
                         "cpu") == 1
    assert pick_measured([(5.0, "onnx_runtime"), (5.1, "paddle_infer")], "gpu") == 0
    assert pick_measured([(7.0, "openvino")], "cpu") == 0
