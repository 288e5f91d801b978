"""Engines in the graph's process (``--hosting graph``, what ``auto`` takes on CPU) against
separate engine models, served by the real tritonserver: the same results, fewer processes."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from hpi_triton import Client
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.pages import make_realistic_pages
from hpi_triton.server import TritonServer
from hpi_triton.server.processes import stub_processes
from hpi_triton.transforms.local_ocr import LocalOCR
from hpi_triton.triton_models.config import read_pbtxt

pytestmark = pytest.mark.functional

ROLES = ("TextDetection", "TextRecognition", "TextLineOrientation")


@pytest.fixture(scope="module")
def repos(wheel_models, shared_cache_dir, tmp_path_factory):
    """OCR with text-line orientation built twice: separate engine models, engines in the
    graph."""
    tmp = tmp_path_factory.mktemp("hosting")
    spec = pipeline_spec("OCR", {
        "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
        "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
        "TextLineOrientation": wheel_models["ch_ppocr_mobile_v2_cls_onnx"]})
    built = {}
    for hosting in ("python", "graph"):
        report = build_repository([], BuildOptions(out=tmp / hosting, cache_dir=shared_cache_dir,
                                                   hosting=hosting), [spec])
        built[hosting] = (tmp / hosting, report)
    return built


def _read(repo, encoded, **params):
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        results = [r.result for r in client.predict_many("OCR", encoded, concurrency=3,
                                                         **params)]
        stubs = stub_processes(server.process.pid)
    return results, stubs


def test_graph_runs_its_engines_and_reads_as_separate_models(repos):
    repo, report = repos["graph"]
    # The repository: the graph alone, its engines in its version dir.
    served = sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file())
    assert served == ["OCR"]
    config = read_pbtxt(repo / "OCR" / "config.pbtxt")
    hosted = json.loads(config.parameters["hosted_engines"].string_value)
    assert sorted(hosted) == [f"OCR_{role}" for role in sorted(ROLES)]
    for model, entry in hosted.items():
        folder = repo / "OCR" / "1" / "engines" / model
        assert (folder / entry["parameters"]["model_file"]).is_file()
        assert entry["parameters"]["engine"] in ("openvino", "paddle", "onnxruntime")
        assert entry["inputs"] and entry["outputs"]
    assert {m.hosting for m in report.models} == {"graph"}
    assert report.transforms["hosting"]["graphs"] == {"OCR": sorted(hosted)}
    assert "## Engines in the graphs" in (repo / "REPORT.md").read_text()
    # Equal results: every text, box and score, with the build's parameters and a request's.
    pages = make_realistic_pages(4, seed=5)
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    read = {}
    for key, params in (("default", {}), ("wide", {"text_det_unclip_ratio": 2.0})):
        graph, graph_stubs = read[key] = _read(repo, encoded, **params)
        separate, separate_stubs = _read(repos["python"][0], encoded, **params)
        assert graph == separate
        assert sum(len(r["rec_texts"]) for r in graph) >= 4 * 8
    assert read["default"][0] != read["wide"][0]  # the request's parameter reached the graph
    # Fewer processes: only the graph's instances run stubs.
    assert sorted(graph_stubs) == ["OCR"]
    assert sorted(separate_stubs) == sorted(["OCR", *(f"OCR_{role}" for role in ROLES)])
    # The in-process reference reads the hosted engines where they now are.
    local = LocalOCR.load(repo, "OCR").flow().run(pages[0].image)
    assert local["rec_texts"] == read["default"][0][0]["rec_texts"]


def test_cli_build_hosts_engines_in_the_graph_by_default_on_cpu(wheel_models, shared_cache_dir,
                                                                tmp_path):
    """``hpi-triton build`` with no --hosting: auto, which is graph on a CPU build; a GPU
    build refuses --hosting graph before any conversion."""
    env_cache = ["--cache-dir", str(shared_cache_dir)]
    proc = subprocess.run(
        [sys.executable, "-m", "hpi_triton.cli", "build", "--pipeline", "OCR", "--out",
         str(tmp_path / "repo"), "--quiet",
         "--model", f"TextDetection={wheel_models['PP-OCRv4_mobile_det']}",
         "--model", f"TextRecognition={wheel_models['PP-OCRv4_mobile_rec']}", *env_cache],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "repo" / "build_report.json").read_text())
    assert report["hosting"] == "auto"
    assert {m["hosting"] for m in report["models"]} == {"graph"}
    assert not (tmp_path / "repo" / "OCR_TextDetection").exists()
    refused = subprocess.run(
        [sys.executable, "-m", "hpi_triton.cli", "build", "--pipeline", "OCR", "--out",
         str(tmp_path / "gpu"), "--quiet", "--device", "gpu", "--hosting", "graph",
         "--model", f"TextDetection={wheel_models['PP-OCRv4_mobile_det']}",
         "--model", f"TextRecognition={wheel_models['PP-OCRv4_mobile_rec']}", *env_cache],
        capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--hosting graph" in refused.stderr
    assert not (tmp_path / "gpu").exists()
