"""Reading PaddleX model dirs: signatures of all three formats, Hpi forms, broken dirs."""

import shutil

import pytest
import yaml

from hpi_triton.core.model_dir import TensorSpec, load_model_dir
from hpi_triton.errors import InferenceConfigError, ModelDirError


def test_legacy_signature(wheel_models):
    det = load_model_dir(wheel_models["PP-OCRv4_mobile_det"])
    assert det.format == "legacy"
    assert det.inputs == [TensorSpec("x", "float32", (-1, 3, -1, -1))]
    assert det.outputs == [TensorSpec("sigmoid_0.tmp_0", "float32", (-1, 1, -1, -1))]
    assert det.batched
    assert det.dynamic_shapes["x"][1] == [1, 3, 736, 736]
    rec = load_model_dir(wheel_models["PP-OCRv4_mobile_rec"])
    assert rec.outputs[0].shape == (-1, -1, 6625)


def test_pir_signature_and_seed_hpi_form(pir_model):
    source = load_model_dir(pir_model)
    assert source.format == "pir"
    assert source.inputs == [TensorSpec("x", "float32", (-1, 3, 224, 224))]
    assert source.outputs == [TensorSpec("fetch_name_0", "float32", (-1, 1000))]
    assert source.selected_backends == {"cpu": "paddle_infer", "gpu": "onnx_runtime"}
    assert source.supported_backends["cpu"] == ["paddle_infer", "openvino", "onnx_runtime"]


def test_onnx_signature(wheel_models):
    source = load_model_dir(wheel_models["ch_ppocr_mobile_v2_cls_onnx"])
    assert source.format == "onnx"
    assert [t.name for t in source.inputs] == ["x"]
    assert source.inputs[0].shape == (-1, 3, -1, -1)
    assert source.outputs[0].shape[-1] == 2


def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def test_missing_params_names_the_file(wheel_models, tmp_path):
    d = _copy(wheel_models["PP-OCRv4_mobile_det"], tmp_path)
    (d / "inference.pdiparams").unlink()
    with pytest.raises(ModelDirError, match=r"inference\.pdiparams: missing"):
        load_model_dir(d)


def test_missing_and_unreadable_yml(wheel_models, tmp_path):
    d = _copy(wheel_models["PP-OCRv4_mobile_det"], tmp_path)
    (d / "inference.yml").write_text("Global: [unclosed\n  - : :")
    with pytest.raises(ModelDirError, match="not readable YAML"):
        load_model_dir(d)
    (d / "inference.yml").unlink()
    with pytest.raises(ModelDirError, match=r"inference\.yml: missing"):
        load_model_dir(d)


def test_no_model_file(tmp_path):
    (tmp_path / "inference.yml").write_text("Global: {model_name: x}\n")
    with pytest.raises(ModelDirError, match="no model file"):
        load_model_dir(tmp_path)


def test_truncated_model_file(wheel_models, tmp_path):
    d = _copy(wheel_models["PP-OCRv4_mobile_det"], tmp_path)
    data = (d / "inference.pdmodel").read_bytes()
    (d / "inference.pdmodel").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelDirError, match="inference.pdmodel"):
        load_model_dir(d)
    (d / "inference.pdmodel").unlink()
    (d / "inference.json").write_text("{not json")
    with pytest.raises(ModelDirError, match="not a PIR program"):
        load_model_dir(d)


def test_bad_hpi_fields(wheel_models, tmp_path):
    d = _copy(wheel_models["PP-OCRv4_mobile_det"], tmp_path)
    config = yaml.safe_load((d / "inference.yml").read_text())
    config["Hpi"] = {"selected_backends": {"tpu": "paddle_infer"}}
    (d / "inference.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(InferenceConfigError, match="Hpi.selected_backends"):
        load_model_dir(d)
    shapes = {"image": [[1], [1], [1]]}
    config["Hpi"] = {"backend_configs": {"tensorrt": {"dynamic_shapes": shapes}}}
    (d / "inference.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(InferenceConfigError, match="names no input"):
        load_model_dir(d)
