"""config.pbtxt through Triton's own ModelConfig schema, with golden round-trip files."""

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from hpi_triton.errors import ModelConfigError
from hpi_triton.triton_models.config import (
    DynamicBatching,
    InstanceGroup,
    TensorConfig,
    TritonModelConfig,
    WarmupSample,
    numpy_dtype,
    read_pbtxt,
    triton_dtype,
)

GOLDEN = Path(__file__).parent.parent / "golden"


def rec_python_config() -> TritonModelConfig:
    return TritonModelConfig(
        name="rec", backend="python", max_batch_size=8,
        inputs=[TensorConfig("x", "float32", [3, 48, -1])],
        outputs=[TensorConfig("softmax_11.tmp_0", "float32", [-1, 6625])],
        instance_groups=[InstanceGroup("cpu", 2)],
        dynamic_batching=DynamicBatching(),
        parameters={"engine": "openvino", "model_file": "model.xml", "precision": "fp32"},
        warmup=[WarmupSample("opt_shape", 1, {"x": [3, 48, 320]})],
    )


def det_native_gpu_config() -> TritonModelConfig:
    return TritonModelConfig(
        name="det", platform="onnxruntime_onnx", default_model_filename="model.onnx",
        max_batch_size=1,
        inputs=[TensorConfig("x", "float32", [3, -1, -1])],
        outputs=[TensorConfig("sigmoid_0.tmp_0", "float32", [1, -1, -1])],
        instance_groups=[InstanceGroup("gpu", 1, [1])],
        parameters={"inter_op_thread_count": "1"},
    )


@pytest.mark.parametrize("factory, golden", [
    (rec_python_config, "rec_python.pbtxt"),
    (det_native_gpu_config, "det_onnxruntime_gpu.pbtxt"),
])
def test_pbtxt_matches_golden_and_round_trips(factory, golden):
    config = factory()
    text = config.to_pbtxt()
    assert text == (GOLDEN / golden).read_text()
    parsed = text_format.Parse(text, model_config_pb2.ModelConfig())
    assert parsed == config.to_proto()


def test_golden_fields_are_what_triton_reads():
    proto = read_pbtxt(GOLDEN / "rec_python.pbtxt")
    assert proto.backend == "python"
    assert proto.max_batch_size == 8
    assert list(proto.input[0].dims) == [3, 48, -1]
    assert proto.input[0].data_type == model_config_pb2.TYPE_FP32
    assert proto.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert proto.instance_group[0].count == 2
    assert proto.HasField("dynamic_batching")
    assert proto.parameters["engine"].string_value == "openvino"
    assert proto.model_warmup[0].inputs["x"].random_data


def test_schema_rejects_bad_kind_and_dtype(tmp_path):
    with pytest.raises(ModelConfigError, match="expected 'cpu' or 'gpu'"):
        TritonModelConfig("m", [TensorConfig("x", "float32", [1])], [],
                          instance_groups=[InstanceGroup("tpu")]).to_pbtxt()
    with pytest.raises(ModelConfigError, match="no Triton equivalent"):
        triton_dtype("complex64")
    with pytest.raises(ModelConfigError, match="not a Triton TYPE"):
        numpy_dtype("TYPE_NOPE")
    bad = tmp_path / "config.pbtxt"
    bad.write_text('name: "x"\nmax_batch_size: "many"\n')
    with pytest.raises(ModelConfigError, match="not a valid Triton model config"):
        read_pbtxt(bad)


@pytest.mark.parametrize("choice, device, max_batch_size, expected", [
    ("auto", "cpu", 8, False),   # on CPU a merged batch runs no cheaper than its requests
    ("auto", "gpu", 8, True),
    ("on", "cpu", 8, True),
    ("off", "gpu", 8, False),
    ("on", "gpu", 1, False),     # nothing to batch
    ("on", "cpu", 0, False),
])
def test_dynamic_batching_choice(choice, device, max_batch_size, expected):
    from hpi_triton.generator.build import dynamic_batching_enabled

    assert dynamic_batching_enabled(choice, device, max_batch_size) is expected


def test_unknown_dynamic_batching_choice_is_refused(tmp_path):
    from hpi_triton.errors import BuildError
    from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository

    with pytest.raises(BuildError, match=r"--dynamic-batching 'always'; expected one of "
                                         r"\('auto', 'on', 'off'\)"):
        build_repository([ModelRequest("m", tmp_path / "model")],
                         BuildOptions(out=tmp_path / "r", dynamic_batching="always"))
    assert not (tmp_path / "r").exists()
