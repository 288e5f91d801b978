"""Build with every usable backend, serve on a real tritonserver, compare with Paddle Inference."""

from __future__ import annotations

import json
import re
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from hpi_triton.client import Client
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner, relative_error
from hpi_triton.errors import (
    HpiTritonError,
    InferError,
    ModelDirError,
    NoUsableBackendError,
    ServerError,
)
from hpi_triton.generator import selection
from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository
from hpi_triton.server import TritonServer
from hpi_triton.triton_models.config import read_pbtxt

from .conftest import SERVED

pytestmark = pytest.mark.functional

# Shapes sent to each model family (batch 2 where the model batches, sizes the samples of the
# build did not use, so verification shapes are not the only ones checked).
INPUT_SHAPES = {
    "PP-OCRv4_mobile_det": (1, 3, 320, 480),
    "PP-OCRv4_mobile_rec": (2, 3, 48, 256),
    "pir": (2, 3, 224, 224),
    "ch_ppocr_mobile_v2_cls_onnx": (2, 3, 48, 192),
}


def _input_for(model: str, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(INPUT_SHAPES[model]).astype(np.float32)


_REFERENCES = {}


def _reference(model_paths, model: str, x: np.ndarray):
    """Paddle Inference in-process on the source model (ONNX Runtime for the ONNX-only dir)."""
    if model not in _REFERENCES:
        source = load_model_dir(model_paths[model])
        _REFERENCES[model] = reference_runner(source)
    runner = _REFERENCES[model]
    result = runner.run({runner.input_names[0]: x})
    return [result[n] for n in runner.output_names]


def test_build_chose_what_was_asked(built):
    _, report = built
    by_name = {m.name: m for m in report.models}
    for name, (_, backend) in SERVED.items():
        if backend is not None:
            expected = {"paddle": "paddle_infer", "onnxruntime": "onnx_runtime"}.get(backend,
                                                                                     backend)
            assert by_name[name].backend == expected, by_name[name].warnings
            assert not by_name[name].warnings
    assert by_name["mnv3_selected"].backend == "paddle_infer"
    assert by_name["mnv3_selected"].selection == "Hpi.selected_backends.cpu"


def test_measured_selection_picks_the_fastest_verified(built):
    _, report = built
    measured = next(m for m in report.models if m.name == "cls_measured")
    timed = [c for c in measured.candidates if c.status == "verified"]
    assert {c.backend for c in timed} >= {"onnx_runtime", "openvino"}
    assert all(c.latency_ms and c.latency_ms > 0 for c in timed)
    fastest = min(c.latency_ms for c in timed)
    chosen = next(c for c in timed if c.backend == measured.backend)
    # The fastest, or one earlier in the fallback order within the tie tolerance of it.
    assert chosen.latency_ms <= fastest * (1 + selection.TIE_TOLERANCE)
    assert measured.selection.startswith("measured")
    assert all(f"{c.backend} {c.latency_ms:.2f} ms" in measured.selection for c in timed)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", sorted(SERVED))
def test_served_outputs_equal_paddle_inference(server, model_paths, name, protocol):
    model = SERVED[name][0]
    x = _input_for(model)
    url = server.http_url if protocol == "http" else server.grpc_url
    client = Client(url, protocol)
    served = client.infer(name, {"x": x})
    expected = _reference(model_paths, model, x)
    assert len(served) == len(expected)
    for got, want in zip(served.values(), expected):
        assert got.shape == want.shape
        assert relative_error(got, want) <= 1e-4


def test_concurrent_requests_are_batched_and_correct(built, server, model_paths):
    # Eight concurrent single-image requests: the dynamic batcher (asked for with
    # dynamic_batching="on") hands several to one execute(); each answer must still be that
    # request's own.
    assert read_pbtxt(built[0] / "rec_openvino" / "config.pbtxt").HasField("dynamic_batching")
    model = "PP-OCRv4_mobile_rec"
    inputs = [np.random.default_rng(i).standard_normal((1, 3, 48, 320)).astype(np.float32)
              for i in range(8)]

    def call(x):
        return Client(server.http_url).infer("rec_openvino", {"x": x})

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, inputs))
    for x, result in zip(inputs, results):
        (got,) = result.values()
        assert relative_error(got, _reference(model_paths, model, x)[0]) <= 1e-4
    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics(
        "rec_openvino")["model_stats"][0]
    assert stats["inference_count"] >= 8


def test_bad_requests_fail_alone_and_server_stays_up(server):
    http = httpclient.InferenceServerClient(server.http_url)
    # Wrong dtype: Triton rejects it against config.pbtxt.
    bad = httpclient.InferInput("x", [1, 3, 48, 192], "FP64")
    bad.set_data_from_numpy(np.zeros((1, 3, 48, 192), np.float64))
    with pytest.raises(InferenceServerException, match="FP64|data-type|datatype"):
        http.infer("cls_onnx_runtime", [bad])
    # Wrong channel count passes Triton's checks and fails in the engine: a per-request error.
    wrong = grpcclient.InferInput("x", [1, 4, 48, 192], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 4, 48, 192), np.float32))
    with pytest.raises(InferenceServerException):
        grpcclient.InferenceServerClient(server.grpc_url).infer("cls_onnx_runtime", [wrong])
    # Our client checks before sending.
    with pytest.raises(InferError, match="expected float32"):
        Client(server.http_url).infer("cls_onnx_runtime", {"x": np.zeros((1, 3, 48, 192))})
    with pytest.raises(InferError, match="missing"):
        Client(server.http_url).infer("cls_onnx_runtime", {})
    assert server.process.poll() is None and server.is_ready()
    ok = Client(server.http_url).infer("cls_onnx_runtime",
                                       {"x": np.zeros((1, 3, 48, 192), np.float32)})
    assert next(iter(ok.values())).shape == (1, 2)


def test_repository_is_self_contained_and_reported(built):
    repo, report = built
    for name in SERVED:
        version = repo / name / "1"
        config = read_pbtxt(repo / name / "config.pbtxt")
        assert config.backend == "python"
        assert (version / "model.py").is_file()
        assert (version / "python_backend" / "engines" / "__init__.py").is_file()
        assert (version / config.parameters["model_file"].string_value).is_file()
        for source in version.glob("*.py"):
            assert not re.search(r"^\s*(from|import)\s+hpi_triton", source.read_text(), re.M)
    text = (repo / "REPORT.md").read_text()
    for model in report.models:
        assert f"| {model.name} |" in text
    data = json.loads((repo / "build_report.json").read_text())
    assert {m["name"] for m in data["models"]} == set(SERVED)


def test_warm_rebuild_converts_nothing(built, requests_all, shared_cache_dir, tmp_path):
    before = sorted(p.name for p in (shared_cache_dir / "artifacts").iterdir())
    report = build_repository(requests_all,
                              BuildOptions(out=tmp_path / "again", cache_dir=shared_cache_dir))
    after = sorted(p.name for p in (shared_cache_dir / "artifacts").iterdir())
    assert before == after
    for model in report.models:
        verified = [c for c in model.candidates if c.status == "verified"]
        assert verified and all(c.cache_hit for c in verified), model.name


def test_conversion_failure_falls_back_with_warning(wheel_models, fresh_cache, tmp_path):
    # Both failures are real: paddle2onnx cannot convert the legacy det, and the legacy rec
    # converts to an ONNX file ONNX Runtime refuses (caught by verification). The fallback is
    # the one the user listed (--backend det=onnx_runtime,openvino).
    report = build_repository(
        [ModelRequest("det", wheel_models["PP-OCRv4_mobile_det"], "onnx_runtime,openvino"),
         ModelRequest("rec", wheel_models["PP-OCRv4_mobile_rec"], "onnx_runtime,openvino")],
        BuildOptions(out=tmp_path / "repo", cache_dir=fresh_cache))
    det, rec = report.models
    assert det.backend == "openvino" and rec.backend == "openvino"
    assert det.selection.startswith("fallback") and rec.selection.startswith("fallback")
    assert any("paddle2onnx" in w and "onnx_runtime failed" in w for w in det.warnings)
    assert any("does not load" in w for w in rec.warnings)
    failed = {c.backend: c.status for c in det.candidates}
    assert failed["onnx_runtime"] == "failed"
    assert "fallback" in (tmp_path / "repo" / "REPORT.md").read_text()


@pytest.mark.parametrize("asked, reason", [
    ("onnx_runtime", "paddle2onnx"),          # converts nowhere: a real conversion failure
    ("tensorrt", "tensorrt"),                 # cannot run on this CPU machine at all
])
def test_an_explicit_backend_that_cannot_serve_fails_naming_why(wheel_models, shared_cache_dir,
                                                                 tmp_path, asked, reason):
    out = tmp_path / "repo"
    with pytest.raises(NoUsableBackendError) as failed:
        build_repository([ModelRequest("det", wheel_models["PP-OCRv4_mobile_det"], asked)],
                         BuildOptions(out=out, cache_dir=shared_cache_dir))
    message = str(failed.value)
    assert message.startswith(f"--backend det={asked}: model 'det'")
    assert reason in message
    # The fix: a backend this machine can use, named or listed as a fallback.
    assert f"--backend det={asked},openvino" in message
    assert not out.exists()


def test_broken_dir_fails_cleanly_and_leaves_nothing(wheel_models, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(wheel_models["PP-OCRv4_mobile_rec"], broken)
    (broken / "inference.pdiparams").unlink()
    out = tmp_path / "out" / "repo"
    with pytest.raises(ModelDirError, match="inference.pdiparams"):
        build_repository([ModelRequest("cls", wheel_models["ch_ppocr_mobile_v2_cls_onnx"]),
                          ModelRequest("rec", broken)], BuildOptions(out=out))
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_failure_after_conversions_leaves_no_partial_repository(wheel_models, pir_model,
                                                               tmp_path, shared_cache_dir):
    # The first model builds; the second cannot (onnx dir asked for Paddle Inference only
    # after every fallback is impossible) — nothing may remain.
    out = tmp_path / "repo"
    with pytest.raises(HpiTritonError):
        build_repository([ModelRequest("ok", pir_model, "paddle_infer"),
                          ModelRequest("bad", pir_model, "no_such_backend")],
                         BuildOptions(out=out, cache_dir=shared_cache_dir))
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".repo")] == []


def test_native_hosting_configs_fit_the_schema(wheel_models, shared_cache_dir, tmp_path):
    report = build_repository(
        [ModelRequest("cls", wheel_models["ch_ppocr_mobile_v2_cls_onnx"], "onnx_runtime"),
         ModelRequest("det", wheel_models["PP-OCRv4_mobile_det"], "paddle_infer")],
        BuildOptions(out=tmp_path / "native", hosting="native", cache_dir=shared_cache_dir))
    cls = read_pbtxt(tmp_path / "native" / "cls" / "config.pbtxt")
    assert cls.platform == "onnxruntime_onnx"
    assert cls.default_model_filename == "model.onnx"
    assert (tmp_path / "native" / "cls" / "1" / "model.onnx").is_file()
    assert not (tmp_path / "native" / "cls" / "1" / "model.py").exists()
    assert [i.name for i in cls.input] == ["x"]
    det = read_pbtxt(tmp_path / "native" / "det" / "config.pbtxt")
    assert det.backend == "python"  # Paddle Inference is always a Python-backend model
    assert {m.name: m.hosting for m in report.models} == {"cls": "onnxruntime_onnx",
                                                           "det": "python"}


def test_model_that_fails_to_load_is_named(built, tmp_path):
    repo, _ = built
    copy = tmp_path / "repo"
    shutil.copytree(repo / "cls_openvino", copy / "cls_openvino")
    (copy / "cls_openvino" / "1" / "model.xml").write_text("<not-an-ir/>")
    with pytest.raises(ServerError, match="cls_openvino"):
        TritonServer(copy, 0, 0, 0).start(timeout=120)


def test_gpu_build_without_gpu_is_a_clear_error(wheel_models, tmp_path):
    from hpi_triton.errors import NoUsableBackendError
    from hpi_triton.triton_models.backends import Device
    from hpi_triton.triton_models.backends.base import gpu_count

    if gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.raises(NoUsableBackendError, match="no backend converted and verified on gpu"):
        build_repository([ModelRequest("cls", wheel_models["ch_ppocr_mobile_v2_cls_onnx"])],
                         BuildOptions(out=tmp_path / "r", device=Device("gpu")))
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backend", ["tensorrt", "paddle_tensorrt"])
def test_gpu_engines_serve_equal_to_paddle(backend, model_paths, tmp_path, shared_cache_dir):
    """Runs only where the backend is usable (NVIDIA GPU + TensorRT); skipped here, saying why."""
    from hpi_triton.errors import BackendUnavailableError
    from hpi_triton.triton_models.backends import Device, registry

    try:
        reason = registry.get(backend).unavailable_reason(Device("gpu"), "fp32")
    except BackendUnavailableError as exc:
        reason = str(exc)
    if reason:
        pytest.skip(f"{backend} not verified on this machine: {reason}")
    out = tmp_path / "gpu"
    report = build_repository([ModelRequest("m", model_paths["pir"], backend)],
                              BuildOptions(out=out, device=Device("gpu"),
                                           cache_dir=shared_cache_dir))
    assert report.models[0].backend == backend
    with TritonServer(out, 0, 0, 0) as server:
        x = _input_for("pir")
        (got,) = Client(server.http_url).infer("m", {"x": x}).values()
        assert relative_error(got, _reference(model_paths, "pir", x)[0]) <= 1e-4
