"""``hpi-triton bench`` against a real tritonserver, and the build report's chart."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.server import TritonServer

pytestmark = pytest.mark.functional

CLI = [sys.executable, "-m", "hpi_triton.cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def classification(pir_model, shared_cache_dir, tmp_path_factory):
    repo = tmp_path_factory.mktemp("bench") / "repo"
    report = build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [
        pipeline_spec("image_classification", {"ImageClassification": pir_model})])
    with TritonServer(repo, 0, 0, 0) as server:
        yield server, repo, report


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), rng.integers(0, 255, (200 + 40 * i, 300, 3),
                                                           dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image: skipped")
    return folder


def _bench(server, protocol, *args):
    url = server.http_url if protocol == "http" else server.grpc_url
    return subprocess.run(CLI + ["bench", "--url", url, "--protocol", protocol, *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bench_measures_levels_and_splits_server_time(classification, images, tmp_path,
                                                      protocol):
    server = classification[0]
    out = tmp_path / "results"
    proc = _bench(server, protocol, "--pipeline", "image_classification", "--input",
                  str(images), "--concurrency", "1,2", "--duration", "3", "--warmup", "1",
                  "--output-dir", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads((out / "bench.json").read_text())
    assert [level["concurrency"] for level in data["levels"]] == [1, 2]
    assert len(data["inputs"]) == 3  # the .txt is not an image
    for level in data["levels"]:
        assert level["errors"] == 0 and level["requests"] > 0
        assert level["throughput"] == pytest.approx(level["requests"] / level["seconds"],
                                                    rel=1e-3)
        assert 0 < level["p50_ms"] <= level["p90_ms"] <= level["p99_ms"]
        # Closed loop: each client has one request in flight, so the rate is bounded by
        # concurrency / mean latency.
        bound = level["concurrency"] / (level["mean_ms"] / 1e3)
        assert level["throughput"] <= bound * 1.05
        models = {m["model"]: m for m in level["models"]}
        assert {"image_classification",
                "image_classification_ImageClassification"} <= set(models)
        graph = models["image_classification"]
        # The server saw at least the requests the client counted in the window.
        assert graph["requests"] >= level["requests"] * 0.9
        assert graph["compute_infer_ms"] > 0
        # The graph's compute time includes the engine's (it waits on it).
        engine = models["image_classification_ImageClassification"]
        assert graph["compute_infer_ms"] >= engine["compute_infer_ms"] * 0.9
    rows = list(csv.DictReader((out / "bench.csv").open()))
    assert [int(r["concurrency"]) for r in rows] == [1, 2]
    assert float(rows[0]["p99_ms"]) == data["levels"][0]["p99_ms"]
    split = list(csv.DictReader((out / "bench_models.csv").open()))
    assert {r["model"] for r in split} >= {"image_classification"}
    png = (out / "bench.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    with Image.open(out / "bench.png") as image:
        image.verify()
    assert "Where the time goes" in proc.stdout


def test_bench_counts_refused_images_as_errors_and_the_server_keeps_serving(
        classification, images, tmp_path):
    server = classification[0]
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    proc = _bench(server, "http", "--pipeline", "image_classification", "--input", str(bad),
                  "--concurrency", "1", "--duration", "1", "--warmup", "0",
                  "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 1
    level = json.loads((tmp_path / "out" / "bench.json").read_text())["levels"][0]
    assert level["errors"] > 0 and level["requests"] == 0 and level["p50_ms"] is None
    assert "not a decodable image" in level["first_error"]
    assert server.is_ready()
    good = _bench(server, "http", "--pipeline", "image_classification", "--input",
                  str(images / "0.jpg"), "--concurrency", "1", "--duration", "1",
                  "--warmup", "0", "--output-dir", str(tmp_path / "again"))
    assert good.returncode == 0, good.stderr


@pytest.mark.parametrize("args, message", [
    (["--pipeline", "OCR"], "--pipeline 'OCR' is not a ready model"),
    (["--pipeline", "image_classification", "--concurrency", "1,x"],
     "--concurrency '1,x'; expected positive integers"),
    (["--pipeline", "image_classification", "--input", "/nonexistent"],
     "--input /nonexistent: no such file or directory"),
])
def test_bench_refuses_bad_requests_with_the_fix(classification, images, args, message):
    server = classification[0]
    if "--input" not in args:
        args = args + ["--input", str(images)]
    proc = _bench(server, "http", *args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_bench_names_a_missing_server(images):
    proc = subprocess.run(CLI + ["bench", "--url", "localhost:9", "--pipeline", "OCR",
                                 "--input", str(images)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "no Triton server answers there" in proc.stderr


def test_build_report_has_the_latency_chart_and_requirements(classification):
    _, repo, report = classification
    chart = repo / "build_latency.png"
    assert chart.read_bytes().startswith(PNG_MAGIC)
    with Image.open(chart) as image:
        image.verify()
    assert "](build_latency.png)" in (repo / "REPORT.md").read_text()
    engine = next(m for m in report.models)
    chosen = next(c for c in engine.candidates if c.backend == engine.backend)
    assert chosen.latency_ms and chosen.latency_ms > 0  # the chosen engine is measured
    from importlib.metadata import version

    requirements = (repo / "requirements.txt").read_text().split()
    assert f"numpy=={version('numpy')}" in requirements
    assert f"Pillow=={version('Pillow')}" in requirements
    engine_package = {"paddle_infer": "paddlepaddle", "openvino": "openvino",
                      "onnx_runtime": "onnxruntime"}[engine.backend]
    assert f"{engine_package}=={version(engine_package)}" in requirements
