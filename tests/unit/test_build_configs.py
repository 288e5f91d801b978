"""The configs a build wrote stay in memory (issue 30): the transforms edit those typed objects
and write them again, and never read back a config.pbtxt the build just wrote; the files they
write are what editing the parsed config.pbtxt wrote before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format

from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import BuildReport, ModelReport, PipelineReport
from hpi_triton.transforms.layout import write_layout
from hpi_triton.transforms.local_ocr import LocalOCR
from hpi_triton.triton_models.config import (
    InstanceGroup,
    TensorConfig,
    TritonModelConfig,
    WarmupSample,
    read_pbtxt,
    recording_writes,
)

OCR_SETTINGS = {
    "models": {"TextDetection": ["OCR_TextDetection", "x", "sigmoid_0.tmp_0"],
               "TextRecognition": ["OCR_TextRecognition", "x", "softmax_11.tmp_0"]},
    "params": {"text_rec_batching": "paddlex"},
    "det_normalize": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                      "scale": 0.00392156862745098},
    "rec_batch_size": 6,
}


def engine_config(name: str, engine: str = "openvino") -> TritonModelConfig:
    return TritonModelConfig(
        name=name, backend="python", max_batch_size=8,
        inputs=[TensorConfig("x", "float32", [3, 48, -1])],
        outputs=[TensorConfig("y", "float32", [-1, 6625])],
        instance_groups=[InstanceGroup("cpu", 1)],
        parameters={"engine": engine, "model_file": "model.xml", "precision": "fp32"},
        warmup=[WarmupSample("opt_shape", 1, {"x": [3, 48, 320]})],
    )


def staged_ocr(repo: Path):
    """A staged OCR graph with its two engine models, as the build holds it."""
    engines = [ModelReport(name=n, source="", model_name="", format="", config=engine_config(n))
               for n in ("OCR_TextDetection", "OCR_TextRecognition")]
    with recording_writes() as written:
        for model in engines:
            (repo / model.name / "1").mkdir(parents=True)
            (repo / model.name / "1" / "model.xml").write_text("<net/>")
            model.config.write(repo / model.name)
        (repo / "OCR" / "1").mkdir(parents=True)
        (repo / "OCR" / "1" / "characters.txt").write_text("a\nb", encoding="utf-8")
        TritonModelConfig(
            name="OCR", backend="python", inputs=[TensorConfig("image", "uint8", [-1])],
            outputs=[TensorConfig("result", "object", [1])],
            parameters={"pipeline_settings": json.dumps(OCR_SETTINGS, sort_keys=True)},
        ).write(repo / "OCR")
    pipeline = PipelineReport("OCR", "OCR", OCR_SETTINGS["models"], {},
                              configs={"OCR": written["OCR"]})
    return BuildReport(out=str(repo), device="cpu", precision="fp32", hosting="python",
                       models=engines, pipelines=[pipeline])


def test_recording_keeps_the_configs_written_inside_it(tmp_path):
    outside = engine_config("before")
    with recording_writes() as written:
        config = engine_config("m")
        config.write(tmp_path)
    outside.write(tmp_path)
    assert written == {"m": config} and written["m"] is config


def test_report_finds_every_config_the_build_wrote_and_keeps_them_out_of_the_json(tmp_path):
    report = staged_ocr(tmp_path)
    assert report.model_config("OCR_TextDetection") is report.models[0].config
    assert report.model_config("OCR") is report.pipelines[0].configs["OCR"]
    with pytest.raises(BuildError, match="no model 'nope'.*OCR_TextDetection"):
        report.model_config("nope")
    assert "configs" not in report.pipelines[0].to_dict()
    json.dumps(report.to_dict())  # nothing typed left in it


def _edited_on_disk(path: Path, edit) -> str:
    """What the transforms wrote before: config.pbtxt parsed, edited, written back."""
    proto = read_pbtxt(path)
    edit(proto)
    return text_format.MessageToString(proto)


def test_layout_edits_the_build_configs_and_writes_what_it_wrote_before(tmp_path):
    report = staged_ocr(tmp_path)
    path = tmp_path / "OCR_TextRecognition" / "config.pbtxt"

    def edit(proto):
        proto.instance_group[0].count = 2
        proto.parameters["cpu_threads"].string_value = "3"

    expected = _edited_on_disk(path, edit)
    path.unlink()  # the build's config is the source, not the file
    write_layout(tmp_path, [m.config for m in report.models], 2, 3)
    assert path.read_text() == expected
    assert report.model_config("OCR_TextRecognition").parameters["cpu_threads"] == "3"


def test_local_ocr_inside_a_build_reads_no_config_file(tmp_path):
    report = staged_ocr(tmp_path)
    from_disk = LocalOCR.load(tmp_path, "OCR")
    for config in tmp_path.glob("*/config.pbtxt"):
        config.unlink()
    built = LocalOCR.from_build(tmp_path, report.pipelines[0], report)
    assert built.settings == from_disk.settings and built.characters == ["a", "b"]
    assert built.engine_params("TextDetection") == from_disk.engine_params("TextDetection")
    # The build's own parameters: an edit of its config shows, a caller's copy does not.
    report.model_config("OCR_TextRecognition").parameters["precision"] = "bf16"
    built.engine_params("TextRecognition")["precision"] = "changed"
    assert built.engine_params("TextRecognition")["precision"] == "bf16"


def test_local_ocr_of_a_graph_without_ocr_is_none(tmp_path):
    report = staged_ocr(tmp_path)
    report.pipelines[0].configs["OCR"].parameters.pop("pipeline_settings")
    assert LocalOCR.from_build(tmp_path, report.pipelines[0], report) is None


def test_licence_drops_warmup_from_the_build_config(tmp_path):
    pytest.importorskip("cryptography")
    from hpi_triton.licensing.issuer import keygen, read_public
    from hpi_triton.licensing.repository import protect

    keygen(tmp_path / "issuer")
    public = read_public(tmp_path / "issuer" / "public.pem")
    repo = tmp_path / "repo"
    report = staged_ocr(repo)
    path = repo / "OCR_TextDetection" / "config.pbtxt"
    expected = _edited_on_disk(path, lambda proto: proto.ClearField("model_warmup"))
    path.unlink()
    (done,) = protect(repo, report, public)
    assert done["gate"] == "OCR_license"
    assert path.read_text() == expected
    assert report.model_config("OCR_TextDetection").warmup == []
    assert read_pbtxt(repo / "OCR_license" / "config.pbtxt").backend == "python"


def test_licence_refuses_an_engine_not_loaded_from_memory(tmp_path):
    pytest.importorskip("cryptography")
    from hpi_triton.licensing.issuer import keygen, read_public
    from hpi_triton.licensing.repository import protect

    keygen(tmp_path / "issuer")
    repo = tmp_path / "repo"
    report = staged_ocr(repo)
    report.model_config("OCR_TextRecognition").parameters["engine"] = "paddle_infer"
    with pytest.raises(BuildError, match="OCR_TextRecognition.*'paddle_infer'"):
        protect(repo, report, read_public(tmp_path / "issuer" / "public.pem"))


def test_graph_hosting_moves_the_engines_into_the_graph(tmp_path):
    """--hosting graph: the engines' version dirs move into the graph's, the graph's config
    names them with the parameters and tensors their models had, and a model still served on
    its own (a plain model) stays; LocalOCR reads them where they now are."""
    from hpi_triton.generator.graph_hosting import HOSTED_ENGINES, host_in_graphs, hostable

    report = staged_ocr(tmp_path)
    assert hostable(report) == {"OCR": ["OCR_TextDetection", "OCR_TextRecognition"]}
    graphs = host_in_graphs(tmp_path, report, 2, 1, keep_served=["OCR_TextRecognition"])
    assert graphs == {"OCR": ["OCR_TextDetection", "OCR_TextRecognition"]}
    config = read_pbtxt(tmp_path / "OCR" / "config.pbtxt")
    assert config.instance_group[0].count == 2
    hosted = json.loads(config.parameters[HOSTED_ENGINES].string_value)
    assert hosted["OCR_TextDetection"] == {
        "parameters": {"engine": "openvino", "model_file": "model.xml", "precision": "fp32",
                       "cpu_threads": "1"},
        "inputs": ["x"], "outputs": ["y"]}
    for model in hosted:
        assert (tmp_path / "OCR" / "1" / "engines" / model / "model.xml").is_file()
    assert not (tmp_path / "OCR_TextDetection").exists()  # no longer served on its own
    assert (tmp_path / "OCR_TextRecognition" / "config.pbtxt").is_file()  # still is
    assert [m.hosting for m in report.models] == ["graph", ""]
    local = LocalOCR.load(tmp_path, "OCR")
    assert local.engine_dirs["OCR_TextDetection"] == tmp_path / "OCR" / "1" / "engines" / \
        "OCR_TextDetection"
    assert local.engine_params("TextDetection")["cpu_threads"] == "1"


def test_a_vision_ensemble_keeps_its_engine_model(tmp_path):
    report = staged_ocr(tmp_path)
    from hpi_triton.generator.graph_hosting import hostable

    report.pipelines[0].steps = ["pre", "OCR_TextDetection", "post"]  # an ensemble
    assert hostable(report) == {}
