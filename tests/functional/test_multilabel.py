"""image_multilabel_classification, the pipeline added through "Adding a pipeline" (README):
built, served by the real tritonserver, and compared with PaddleX 3.7.2's own pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import pytest
import yaml

from hpi_triton import Client
from hpi_triton.compare import compare
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import InferenceConfigError, InferError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.server import TritonServer
from tests.support.families import scene
from tests.support.ocr_dataset import make_pages

pytestmark = pytest.mark.functional

NAME = "image_multilabel_classification"


# A multi-label head as PaddleX's _ML models end: per-class sigmoid scores. Pooled colour →
# 8 classes, random weights (seed 0): scores spread over (0, 1), so a threshold keeps some
# classes and drops others, and differs between images.
_EXPORT = """
import sys, paddle
paddle.seed(0)
net = paddle.nn.Sequential(paddle.nn.Conv2D(3, 8, 3, stride=4), paddle.nn.ReLU(),
                           paddle.nn.AdaptiveAvgPool2D(1), paddle.nn.Flatten(),
                           paddle.nn.Linear(8, 8), paddle.nn.Sigmoid())
net.eval()
paddle.jit.save(net, sys.argv[1] + "/inference",
                input_spec=[paddle.static.InputSpec([None, 3, None, None], "float32", "x")])
"""


@pytest.fixture(scope="module")
def multilabel_model(tmp_path_factory):
    """A Paddle (PIR) multi-label classifier in the form PaddleX ships PP-LCNet_x1_0_ML: its
    inference.yml names that model, image classification's transform ops and
    MultiLabelThreshOutput. PaddleX runs such models on Paddle only, and never applies the
    CropImage declared here (any input size: the served graph must not crop either)."""
    folder = tmp_path_factory.mktemp("ml") / "PP-LCNet_x1_0_ML"
    folder.mkdir()
    subprocess.run([sys.executable, "-c", _EXPORT, str(folder)], check=True,
                   capture_output=True)
    config = {
        "Global": {"model_name": "PP-LCNet_x1_0_ML"},
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
            {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "scale": 0.00392156862745098, "order": ""}},
            {"ToCHWImage": None}]},
        "PostProcess": {"MultiLabelThreshOutput": {
            "threshold": 0.5, "label_list": [f"tag{i}" for i in range(8)]}}}
    (folder / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder


def test_multilabel_served_and_identical_to_paddlex(multilabel_model, shared_cache_dir,
                                                     paddlex_python, tmp_path):
    repo = tmp_path / "repo"
    report = build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir),
                              [pipeline_spec(NAME, {"ImageMultiLabelClassification":
                                                    multilabel_model})])
    assert report.pipelines[0].params["threshold"] == 0.5
    assert "Pillow" in (repo / "requirements.txt").read_text()
    inputs = tmp_path / "in"
    inputs.mkdir()
    cv2.imwrite(str(inputs / "page_0.png"), make_pages(1, seed=50)[0].image)
    cv2.imwrite(str(inputs / "scene_1.png"), scene(360, 480, 1))
    built = json.loads((repo / "build_report.json").read_text())
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        image = cv2.imread(str(inputs / "page_0.png"))
        default = client.predict(NAME, image)
        low = client.predict(NAME, image, threshold=0.0)
        # some classes above 0.5, all eight above 0, highest score first, named
        assert 0 < len(default["class_ids"]) < len(low["class_ids"]) == 8
        assert all(s > 0.5 for s in default["scores"])
        assert low["scores"] == sorted(low["scores"], reverse=True)
        assert low["class_ids"][:len(default["class_ids"])] == default["class_ids"]
        assert low["label_names"] == [f"tag{i}" for i in low["class_ids"]]
        with pytest.raises(InferError, match="threshold"):
            client.predict(NAME, image, threshold=1.5)
        assert client.predict(NAME, image)["class_ids"] == default["class_ids"]
        for params in ({}, {"threshold": 0.0}):
            results = compare(client, NAME, built, [str(inputs)], str(paddlex_python),
                              params=params)
            assert len(results) == 2 and all(r.error is None for r in results), \
                [r.error for r in results]
            assert [str(d) for r in results for d in r.differences] == []
            assert all(r.served["class_ids"] for r in results)


def test_per_class_thresholds_are_refused_naming_the_field(multilabel_model, shared_cache_dir,
                                                            tmp_path):
    folder = tmp_path / "per_class"
    shutil.copytree(multilabel_model, folder)
    config = yaml.safe_load((folder / "inference.yml").read_text())
    config["PostProcess"]["MultiLabelThreshOutput"]["threshold"] = {"default": 0.5, "3": 0.2}
    (folder / "inference.yml").write_text(yaml.safe_dump(config))
    with pytest.raises(InferenceConfigError, match="MultiLabelThreshOutput.threshold"):
        build_repository([], BuildOptions(out=tmp_path / "repo",
                                          cache_dir=shared_cache_dir),
                         [pipeline_spec(NAME, {"ImageMultiLabelClassification": folder})])
    assert not (tmp_path / "repo").exists()
