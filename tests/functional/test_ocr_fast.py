"""The OCR fast mode (gated int8 + width buckets) and the measured engine layout, built with
the real NNCF / OpenVINO and served by the real tritonserver."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from hpi_triton import Client
from hpi_triton.pages import cer, make_realistic_pages
from hpi_triton.server import TritonServer
from hpi_triton.transforms import quantize
from hpi_triton.transforms.layout import layouts, usable_cores
from hpi_triton.transforms.local_ocr import LocalOCR
from hpi_triton.triton_models.config import read_pbtxt

pytestmark = pytest.mark.functional

CLI = [sys.executable, "-m", "hpi_triton.cli"]


def _build(wheel_models, cache, out, *extra):
    det, rec = wheel_models["PP-OCRv4_mobile_det"], wheel_models["PP-OCRv4_mobile_rec"]
    return subprocess.run(CLI + ["build", "--pipeline", "OCR", "--model", f"TextDetection={det}",
                                 "--model", f"TextRecognition={rec}", "--out", str(out),
                                 "--cache-dir", str(cache), "--quiet", *extra],
                          capture_output=True, text=True, timeout=900)


def _write_pages(folder, pages):
    folder.mkdir()
    for i, page in enumerate(pages):
        cv2.imwrite(str(folder / f"page_{i}.png"), page.image)
    return folder


@pytest.fixture(scope="module")
def fast_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    """``--fast`` calibrated on the user's 3 pages, a bound every candidate meets (so the
    fastest is kept), and ``--concurrency 2``: one build checks both transforms."""
    tmp = tmp_path_factory.mktemp("fast")
    calibration = _write_pages(tmp / "calibration", make_realistic_pages(3, seed=41))
    proc = _build(wheel_models, shared_cache_dir, tmp / "repo", "--fast", "--calibration",
                  str(calibration), "--max-cer-delta", "100", "--concurrency", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "repo", json.loads((tmp / "repo" / "build_report.json").read_text())


def test_fast_build_keeps_the_fastest_int8_candidate(fast_repo):
    repo, report = fast_repo
    (gate,) = report["transforms"]["quantize"]
    assert gate["calibration"].startswith("3 of 3 images from")
    # Per float precision of this CPU (fp32; bf16 where it has bf16 units): the float engines
    # in width buckets (fp32: measured, never kept; bf16: a candidate), then the three int8
    # candidates.
    assert gate["precisions"] == quantize.float_precisions()
    assert sorted((c["precision"], tuple(c["int8"])) for c in gate["candidates"]) == sorted(
        (p, combo) for p in gate["precisions"] for combo in [()] + list(quantize.CANDIDATES))
    changed = [c for c in gate["candidates"] if c["int8"] or c["precision"] != "fp32"]
    assert all(c["accepted"] for c in changed)
    assert not next(c for c in gate["candidates"] if c not in changed)["accepted"]
    top = max(c["img_s"] for c in changed)  # within 5% of it, the first listed wins
    fastest = next(c for c in changed if c["img_s"] >= top * (1 - quantize.TIE_TOLERANCE))
    assert (gate["chosen"], gate["precision"]) == (fastest["int8"], fastest["precision"])
    for role in ("TextDetection", "TextRecognition"):
        folder, params = _engine(repo, f"OCR_{role}")
        ir = (folder / "model.xml").read_text()
        assert params["precision"] == gate["precision"]
        if role in gate["chosen"]:
            assert "FakeQuantize" in ir and params["quantization"] == "int8"
        else:
            assert "FakeQuantize" not in ir and "quantization" not in params
    assert report["pipelines"][0]["params"]["text_rec_batching"] == "width_buckets"
    assert report["pipelines"][0]["params"]["unclip_ratio"] == 2.0  # spaces kept
    text = (repo / "REPORT.md").read_text()
    assert "## int8 quantization" in text and f"**{quantize.describe(fastest)}** kept" in text


def _engine(repo, model):
    """(artifact folder, parameters) of engine ``model``: in the graph where it hosts it."""
    hosted = read_pbtxt(repo / "OCR" / "config.pbtxt").parameters.get("hosted_engines")
    if hosted is not None and model in json.loads(hosted.string_value):
        return (repo / "OCR" / "1" / "engines" / model,
                json.loads(hosted.string_value)[model]["parameters"])
    params = read_pbtxt(repo / model / "config.pbtxt").parameters
    return repo / model / "1", {k: v.string_value for k, v in params.items()}


def test_layout_is_measured_and_written(fast_repo):
    """--hosting auto (the CLI's default): engines in the graph and separate engine models,
    each split of the cores; graph first, a later layout kept when >= 5% faster."""
    repo, report = fast_repo
    layout = report["transforms"]["layout"]
    assert [(t["hosting"], t["instances"], t["cpu_threads"]) for t in layout["tried"]] == [
        (hosting, *split) for hosting in ("graph", "python") for split in layouts(usable_cores())]
    assert all(t["img_s"] > 0 for t in layout["tried"])
    best = layout["tried"][0]
    for tried in layout["tried"][1:]:
        best = tried if tried["img_s"] >= best["img_s"] * 1.05 else best
    assert layout["chosen"] == {k: best[k] for k in ("hosting", "instances", "cpu_threads")}
    graph = read_pbtxt(repo / "OCR" / "config.pbtxt")
    for model in ("OCR_TextDetection", "OCR_TextRecognition"):
        _, params = _engine(repo, model)
        assert params["cpu_threads"] == str(best["cpu_threads"])
        if best["hosting"] == "python":
            assert read_pbtxt(repo / model / "config.pbtxt").instance_group[0].count == \
                best["instances"]
    if best["hosting"] == "graph":
        assert graph.instance_group[0].count == best["instances"]
        assert {m["hosting"] for m in report["models"]} == {"graph"}
    assert "## Engine layout (`--concurrency 2`)" in (repo / "REPORT.md").read_text()


def test_fast_repository_serves_what_the_gate_measured(fast_repo):
    repo, _ = fast_repo
    pages = make_realistic_pages(3, seed=43)
    flow = LocalOCR.load(repo, "OCR").flow()
    local = [flow.run(p.image) for p in pages]
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        served = [client.predict("OCR", cv2.imencode(".png", p.image)[1].tobytes())
                  for p in pages]
    assert [s["rec_texts"] for s in served] == [lo["rec_texts"] for lo in local]
    assert [s["dt_polys"] for s in served] == [lo["dt_polys"] for lo in local]
    assert cer([s["rec_texts"] for s in served], pages) < 0.05


def test_gate_keeps_fp32_when_no_candidate_passes(wheel_models, shared_cache_dir, tmp_path,
                                                  monkeypatch, caplog):
    from hpi_triton.ensembles import pipeline_spec
    from hpi_triton.generator.build import BuildOptions, build_repository

    monkeypatch.setattr(quantize, "MIN_LINE_RECALL", 1.01)  # no reading can meet it
    spec = pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]})
    transform = quantize.QuantizeTransform(calibration_pages=2, held_out_pages=2)
    report = build_repository([], BuildOptions(out=tmp_path / "repo", cache_dir=shared_cache_dir,
                                               transforms=[transform]), [spec])
    (gate,) = report.transforms["quantize"]
    assert gate["chosen"] == [] and not any(c["accepted"] for c in gate["candidates"])
    for role in ("TextDetection", "TextRecognition"):
        assert "FakeQuantize" not in (tmp_path / "repo" / f"OCR_{role}" / "1" /
                                      "model.xml").read_text()
    assert "engines stay fp32" in caplog.text
    assert "engines stay fp32" in (tmp_path / "repo" / "REPORT.md").read_text()
    # A rebuild reuses the gate's outcome from the artifact cache instead of measuring again.
    again = build_repository([], BuildOptions(out=tmp_path / "again", cache_dir=shared_cache_dir,
                                              transforms=[transform]), [spec])
    (cached,) = again.transforms["quantize"]
    assert cached["cache"] == "hit" and cached["candidates"] == gate["candidates"]


def test_unreadable_calibration_image_fails_the_build_cleanly(wheel_models, shared_cache_dir,
                                                              tmp_path):
    calibration = _write_pages(tmp_path / "calibration", make_realistic_pages(1, seed=44))
    (calibration / "scan_07.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = _build(wheel_models, shared_cache_dir, tmp_path / "repo", "--quantize", "int8",
                  "--calibration", str(calibration))
    assert proc.returncode != 0
    assert "scan_07.png is not a readable image" in proc.stderr
    assert not (tmp_path / "repo").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo")]
