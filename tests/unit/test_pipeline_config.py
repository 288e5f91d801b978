"""PaddleX pipeline YAMLs (with nested SubPipelines) read into pipeline specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpi_triton.ensembles import load_pipeline_config, pipeline_spec
from hpi_triton.errors import BuildError

OCR_YAML = {
    "pipeline_name": "OCR",
    "text_type": "general",
    "use_doc_preprocessor": True,
    "use_textline_orientation": False,
    "SubPipelines": {"DocPreprocessor": {
        "pipeline_name": "doc_preprocessor",
        "use_doc_orientation_classify": True,
        "use_doc_unwarping": False,
        "SubModules": {
            "DocOrientationClassify": {"module_name": "doc_text_orientation",
                                       "model_name": "PP-LCNet_x1_0_doc_ori",
                                       "model_dir": "models/doc_ori"},
            "DocUnwarping": {"module_name": "image_unwarping", "model_name": "UVDoc",
                             "model_dir": None}}}},
    "SubModules": {
        "TextDetection": {"module_name": "text_detection", "model_name": "PP-OCRv4_mobile_det",
                          "model_dir": "models/det", "limit_side_len": 960, "thresh": 0.3},
        "TextRecognition": {"module_name": "text_recognition", "model_dir": "/abs/rec",
                            "batch_size": 6, "score_thresh": 0.2}},
}


def test_ocr_yaml_with_doc_preprocessor(tmp_path):
    path = tmp_path / "OCR.yaml"
    path.write_text(yaml.safe_dump(OCR_YAML))
    spec = load_pipeline_config(path)
    assert spec.roles == {"TextDetection": tmp_path / "models/det",
                          "TextRecognition": Path("/abs/rec"),
                          "DocOrientationClassify": tmp_path / "models/doc_ori"}
    assert spec.params["use_doc_preprocessor"] is True
    assert spec.params["use_doc_orientation_classify"] is True
    assert spec.params["use_doc_unwarping"] is False
    assert spec.params["limit_side_len"] == 960
    assert spec.params["text_rec_score_thresh"] == 0.2
    assert spec.params["use_textline_orientation"] is False


def test_ocr_yaml_doc_switch_without_its_model(tmp_path):
    config = dict(OCR_YAML, SubPipelines={"DocPreprocessor": dict(
        OCR_YAML["SubPipelines"]["DocPreprocessor"], use_doc_unwarping=True)})
    path = tmp_path / "OCR.yaml"
    path.write_text(yaml.safe_dump(config))
    # The YAML key is named (the model_dir left empty there), not --model.
    with pytest.raises(BuildError, match=r"SubPipelines.DocPreprocessor.SubModules.DocUnwarping"
                                         r".model_dir is empty while use_doc_unwarping is True"):
        load_pipeline_config(path)
    # Off at the top: the nested switches do not matter.
    path.write_text(yaml.safe_dump(dict(config, use_doc_preprocessor=False)))
    assert load_pipeline_config(path).params["use_doc_unwarping"] is False


def test_served_names(tmp_path):
    spec = pipeline_spec("image_classification", {"ImageClassification": tmp_path},
                         served_name="resnet50")
    assert spec.served_name == "resnet50" and spec.engine_name == "resnet50_ImageClassification"
    with pytest.raises(BuildError, match="--name 'bad name'"):
        pipeline_spec("object_detection", {"ObjectDetection": tmp_path}, served_name="bad name")
    with pytest.raises(BuildError, match="known pipelines: .*instance_segmentation"):
        pipeline_spec("panoptic_segmentation", {})
