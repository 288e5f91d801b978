"""A GPU engine that would run on the CPU refuses to load, naming the cause and the fix.

Real engines on this CPU machine: the pinned onnxruntime-gpu wheel (from PyPI, for this
Python; its CUDA provider cannot load here, which is the point), Paddle Inference's CPU build
and OpenVINO without a GPU plugin device. A runner created with ``device: gpu`` — as the
build's verification and every served engine model create it — must raise, never serve on
the CPU; ``hpi-triton doctor`` names the same cause.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpi_triton import gpu_stack
from hpi_triton.python_backend.engines import WrongDeviceError, create_runner

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def onnxruntime_gpu(shared_cache_dir) -> Path:
    """A folder holding the pinned onnxruntime-gpu for this Python (no dependencies), to put
    ahead of the CPU onnxruntime on PYTHONPATH in child processes."""
    pins, _ = gpu_stack.read_constraints(ROOT / "deploy" / "constraints.txt")
    version = pins["onnxruntime-gpu"]
    target = shared_cache_dir / f"onnxruntime-gpu-{version}-py{sys.version_info[0]}" \
                                f"{sys.version_info[1]}"
    stamp = target / ".ready"
    if not stamp.is_file():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                        "--upgrade", "--target", str(target), f"onnxruntime-gpu=={version}"],
                       check=True, timeout=900)
        stamp.write_text(version)
    return target


def _child(code: str, site: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=timeout)


def _has_library(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def test_recorded_cuda_major_is_the_wheels_own(onnxruntime_gpu):
    done = _child("from onnxruntime.capi import build_and_package_info as b; "
                  "print(b.package_name, b.__version__, b.cuda_version)", onnxruntime_gpu)
    assert done.returncode == 0, done.stderr
    package, version, cuda = done.stdout.split()
    assert package == "onnxruntime-gpu"
    assert int(cuda.split(".")[0]) == gpu_stack.onnxruntime_gpu_cuda_major(version)


def test_onnxruntime_gpu_refuses_to_serve_on_the_cpu(onnxruntime_gpu, shared_cache_dir):
    from hpi_triton import wheel_models as wm

    os.environ.setdefault("HPI_TRITON_CACHE_DIR", str(shared_cache_dir))
    model = wm.model_dirs(["PP-OCRv4_mobile_det_onnx"],
                          root=shared_cache_dir / "models")["PP-OCRv4_mobile_det_onnx"]
    onnx = next(p.name for p in model.iterdir() if p.suffix == ".onnx")
    code = f"""
import json
from hpi_triton.python_backend.engines import create_runner, WrongDeviceError
import onnxruntime
out = {{"providers": onnxruntime.get_available_providers()}}
try:
    runner = create_runner({str(model)!r}, {{"engine": "onnxruntime", "model_file": {onnx!r},
                                             "device": "gpu"}})
    out["served_on"] = runner.providers
except WrongDeviceError as exc:
    out["refused"] = str(exc)
cpu = create_runner({str(model)!r}, {{"engine": "onnxruntime", "model_file": {onnx!r}}})
out["cpu_runner"] = cpu.providers
print(json.dumps(out))
"""
    done = _child(code, onnxruntime_gpu)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # The trap: the provider is listed although it cannot load here.
    assert "CUDAExecutionProvider" in result["providers"]
    assert "served_on" not in result, result
    message = result["refused"]
    assert "onnxruntime-gpu" in message and "needs CUDA 13" in message, message
    if not _has_library("libcublasLt.so.13"):
        assert "libcublasLt.so.13 not found" in message, message
    assert "pip install 'onnxruntime-gpu[cuda,cudnn]==" in message
    # The same wheel still runs CPU sessions: only the GPU request is refused.
    assert result["cpu_runner"] == ["CPUExecutionProvider"]


def test_doctor_names_the_missing_cuda_library(onnxruntime_gpu):
    done = _child("import json; from hpi_triton.doctor import diagnose; "
                  "print(json.dumps(diagnose()))", onnxruntime_gpu, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    entry = report["gpu_engines"]["onnx_runtime"]
    assert entry["package"] == "onnxruntime-gpu" and entry["cuda"].startswith("13")
    assert entry["problem"] and "needs CUDA 13" in entry["problem"]
    if not _has_library("libcublasLt.so.13"):
        assert "libcublasLt.so.13 not found" in entry["problem"]
    assert any(line.startswith("onnx_runtime on gpu: ") for line in report["advice"])


def test_doctor_reports_nothing_for_a_cpu_only_onnxruntime():
    from hpi_triton.doctor import gpu_engines
    from hpi_triton.generator.requirements import installed_version

    if installed_version("onnxruntime-gpu"):
        pytest.skip("this environment has onnxruntime-gpu installed")
    assert gpu_engines() == {}


def test_paddle_cpu_build_refuses_the_gpu(wheel_models):
    model = wheel_models["PP-OCRv4_mobile_det"]
    with pytest.raises(WrongDeviceError, match="Paddle Inference .* is a CPU build"):
        create_runner(model, {"engine": "paddle", "model_file": "inference.pdmodel",
                              "params_file": "inference.pdiparams", "device": "gpu"})


def test_openvino_without_a_gpu_device_refuses(wheel_models):
    import openvino as ov

    if any(d.startswith("GPU") for d in ov.Core().available_devices):
        pytest.skip("this machine has an OpenVINO GPU device")
    model = wheel_models["PP-OCRv4_mobile_det"]
    with pytest.raises(WrongDeviceError, match=r"sees no GPU device \(available: \['CPU'"):
        create_runner(model, {"engine": "openvino", "model_file": "inference.pdmodel",
                              "device": "gpu"})
