"""Mistakes a newcomer makes get an error naming the fix, and a non-zero exit."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hpi_triton.cli import app


@pytest.mark.parametrize("layout, expected", [
    ({}, "holds no model (no sub-folder with a config.pbtxt)"),
    ({"inference.yml": "Global: {model_name: PP-OCRv4_mobile_det}\n"},
     "is a PaddleX model dir (inference.yml), not a model repository"),
    ({"config.pbtxt": 'name: "OCR"\n'}, "one model's folder (config.pbtxt), not the repository"),
])
def test_serve_refuses_a_folder_without_models(tmp_path, layout, expected):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    result = CliRunner().invoke(app, ["serve", str(tmp_path), "--http-port", "1"])
    assert result.exit_code != 0
    assert expected in result.output
    assert "hpi-triton build" in result.output and "tritonserver ready" not in result.output


def test_serve_refuses_a_missing_folder(tmp_path):
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code != 0 and "is not a folder" in result.output


OCR_YAML = """pipeline_name: OCR
SubModules:
  TextDetection: {module_name: text_detection, model_name: PP-OCRv4_mobile_det, model_dir: det}
  TextRecognition: {module_name: text_recognition, model_name: PP-OCRv4_mobile_rec,
                    model_dir: rec}
"""


def test_pipeline_and_a_yaml_of_another_pipeline_conflict(tmp_path):
    from hpi_triton.errors import BuildError
    from hpi_triton.routing import route_build

    yaml_path = tmp_path / "OCR.yaml"
    yaml_path.write_text(OCR_YAML)
    with pytest.raises(BuildError, match=r"--pipeline table_recognition but --pipeline-config "
                                         r".*OCR.yaml is PaddleX's OCR pipeline"):
        route_build([], pipeline="table_recognition", pipeline_config=yaml_path)
    # The same pipeline named in another case is no conflict.
    _, specs = route_build([], pipeline="ocr", pipeline_config=yaml_path)
    assert len(specs) == 1


def test_yaml_with_an_empty_model_dir_names_the_key(tmp_path):
    from hpi_triton.errors import BuildError
    from hpi_triton.routing import route_build

    (tmp_path / "det").mkdir()
    yaml_path = tmp_path / "OCR.yaml"
    yaml_path.write_text(OCR_YAML.replace("model_dir: rec", "model_dir: null"))
    with pytest.raises(BuildError, match=r"SubModules.TextRecognition.model_dir is empty; set "
                                         r"each to the model's folder"):
        route_build([], pipeline_config=yaml_path)


def test_switch_on_for_a_role_without_model_dir_is_refused(tmp_path):
    from hpi_triton.errors import BuildError
    from hpi_triton.routing import route_build

    yaml_path = tmp_path / "OCR.yaml"
    yaml_path.write_text(OCR_YAML + "  TextLineOrientation: {module_name: textline_orientation,"
                         " model_dir: null}\nuse_textline_orientation: True\n")
    with pytest.raises(BuildError, match=r"SubModules.TextLineOrientation.model_dir is empty "
                                         r"while use_textline_orientation is True"):
        route_build([], pipeline_config=yaml_path)
    # Switched off, the empty role is what the YAML means: no error.
    yaml_path.write_text(yaml_path.read_text().replace("use_textline_orientation: True",
                                                       "use_textline_orientation: False"))
    _, specs = route_build([], pipeline_config=yaml_path)
    assert specs[0].params["use_textline_orientation"] is False


def test_models_list_names_every_wheel_model():
    from hpi_triton.wheel_models import WHEEL_MODELS

    result = CliRunner().invoke(app, ["models", "list"])
    assert result.exit_code == 0
    for name in WHEEL_MODELS:
        assert name in result.output


def test_demo_asks_before_replacing_a_folder_it_did_not_write(tmp_path):
    out = tmp_path / "repo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--http-port", "0",
                                      "--grpc-port", "0", "--metrics-port", "0"])
    assert result.exit_code != 0
    assert "exists and was not written by the demo: pass --force" in result.output
    assert (out / "mine.txt").read_text() == "keep me"


def test_demo_checks_its_ports_before_building(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "repo"),
                                          "--http-port", str(port)])
    assert result.exit_code != 0
    assert f"--http-port {port} is taken by another process" in result.output
    assert not (tmp_path / "repo").exists()


def test_failure_reasons_drop_engine_noise_and_stale_temp_paths():
    import tempfile

    from hpi_triton.logs import clean_reason

    temp = tempfile.gettempdir()
    reason = (f"paddle2onnx failed:\n"
              f"/x/extension_utils.py:712: UserWarning: No ccache found. Please be aware\n"
              f"  warnings.warn(warning_message)\n"
              f"I1204 17:18:04.976965 13945 analysis_config.cc:169] New Executor is Running\n"
              f"the 0th elementwise MUST be ir::FloatAttribute ({temp}/tmpab12cd/m/model.json)")
    cleaned = clean_reason(reason)
    assert "ccache" not in cleaned and "warnings.warn" not in cleaned
    assert "New Executor" not in cleaned and "analysis_config" not in cleaned
    assert "the 0th elementwise MUST be ir::FloatAttribute (<temporary folder>/model.json)" \
        in cleaned
    assert "tmpab12cd" not in cleaned
