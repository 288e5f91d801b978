"""``hpi-triton doctor`` on this machine: its readings against the machine's own files and the
backend registry. (On a GPU machine, tests/gpu/check_doctor.py checks the GPU side.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpi_triton.doctor import CPU_FLAGS, cpu_info
from hpi_triton.triton_models.backends import Device, backend_classes, registry


@pytest.fixture(scope="module")
def report():
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "doctor", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cpu_flags_are_this_machines(report):
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert report["cpu"]["flags"] == {f: f in flags for f in CPU_FLAGS}
    assert report["cpu"]["logical_cores"] >= 1


def test_cpu_flags_from_a_given_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 amx_tile amx_bf16\n")
    info = cpu_info(str(cpuinfo))
    assert info["model"] == "Test CPU"
    assert info["flags"]["amx_bf16"] and info["flags"]["avx2"] and not info["flags"]["avx512f"]
    assert any("bf16" in note for note in info["notes"])


def test_gpu_reading_matches_the_driver(report):
    if shutil.which("nvidia-smi") is None:
        assert report["gpu"]["gpus"] == []
        assert "no NVIDIA driver" in report["gpu"]["why_none"]
    else:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
        assert len(report["gpu"]["gpus"]) == listing.count("GPU ")


def test_every_backend_is_reported_with_the_registrys_verdict(report):
    rows = {r["name"]: r for r in report["backends"]}
    assert set(rows) == {b.name for b in backend_classes()}
    for name, row in rows.items():
        assert row["installed"] == (name in registry.names())
        for kind in ("cpu", "gpu"):
            if row["installed"]:
                expected = registry.get(name).unavailable_reason(Device(kind), "fp32")
                assert row[kind] == {"usable": expected is None, "why_not": expected}
            else:
                assert not row[kind]["usable"] and "not installed" in row[kind]["why_not"]
    # What the CPU suite relies on is usable here.
    assert all(rows[n]["cpu"]["usable"] for n in ("paddle_infer", "openvino", "onnx_runtime"))


def test_tritonserver_and_its_backends(report):
    server = report["tritonserver"]
    assert Path(server["executable"]).is_file()
    assert "python" in server["backends"]
    assert Path(server["backend_directory"], "python").is_dir()
    # The wheel's server has no native engine backends: doctor says what to do about it.
    if "onnxruntime" not in server["backends"]:
        assert any("--hosting auto, graph or python" in line for line in report["advice"])


def test_missing_backends_come_with_an_install_hint(report):
    for row in report["backends"]:
        if not row["installed"]:
            assert any(line.startswith(row["name"] + ":") for line in report["advice"])


def test_plain_output_is_readable():
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "doctor"],
                          capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    for heading in ("CPU", "Backends (fp32)", "tritonserver"):
        assert heading in proc.stdout
