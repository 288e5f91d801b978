"""Checks ``hpi-triton doctor`` on a machine with an NVIDIA GPU against independent readings.

Not collected by pytest (CI has no GPU). Run on a GPU machine from the project root:
    PYTHONPATH=. python3 tests/gpu/check_doctor.py [OUT_DIR]
References: ``nvidia-smi`` itself, and PyTorch's CUDA/cuDNN view when torch is installed.
Prints one line per check and exits 1 if any failed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hpi_triton.doctor import diagnose, render


def main() -> int:
    import shutil

    if shutil.which("nvidia-smi") is None:
        print("no nvidia-smi: this check needs a machine with an NVIDIA GPU")
        return 2
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    report = diagnose()
    render(report)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "doctor.json").write_text(json.dumps(report, indent=2))
    checks = []

    def check(name, ok, detail):
        checks.append((name, bool(ok), detail))

    smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True).stdout
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    names = re.findall(r"GPU \d+: (.+?) \(UUID", listing)
    gpus = report["gpu"]["gpus"]
    check("GPUs listed", [g["name"] for g in gpus] == names, f"doctor {gpus} / smi {names}")
    header = re.search(r"CUDA Version: ([\d.]+)", smi)
    check("CUDA driver API version", header and report["gpu"]["cuda_driver"] == header.group(1),
          f"doctor {report['gpu']['cuda_driver']} / smi {header.group(1) if header else None}")
    driver = re.search(r"Driver Version: ([\d.]+)", smi)
    check("driver version", driver and report["gpu"]["driver"] == driver.group(1),
          f"doctor {report['gpu']['driver']} / smi {driver.group(1) if driver else None}")
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        check("compute capability", gpus and gpus[0]["compute_capability"] == f"{major}.{minor}",
              f"doctor {gpus[0]['compute_capability'] if gpus else None} / torch {major}.{minor}")
        # torch's own reading, in a child: it must load its bundled cuDNN, not one the
        # doctor's probes might have touched.
        cudnn = int(subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.backends.cudnn.version() or 0)"],
            capture_output=True, text=True).stdout.strip() or 0)
        expected = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}" if cudnn else None
        entry = report["cuda"]["cudnn"]
        copies = [c["version"] for c in entry.get("copies", [])]
        check("cuDNN found", entry["version"] or copies, f"loader gives {entry['version']}; "
              f"copies {entry.get('copies')}")
        check("torch's bundled cuDNN is among the copies found", expected in copies,
              f"torch {expected} / doctor {copies}")
        runtime = report["cuda"]["cuda_runtime"]["version"]
        check("CUDA runtime found", runtime is not None,
              f"doctor {runtime} at {report['cuda']['cuda_runtime'].get('path')} / torch built "
              f"for {torch.version.cuda}")
    rows = {r["name"]: r for r in report["backends"]}
    try:
        import onnxruntime

        has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        gpu_row = rows["onnx_runtime"]["gpu"]
        check("onnx_runtime on gpu follows the CUDA provider", gpu_row["usable"] == has_cuda,
              f"providers {onnxruntime.get_available_providers()} / doctor {gpu_row}")
    except ImportError:
        pass
    for name in ("tensorrt", "paddle_tensorrt"):
        row = rows[name]["gpu"]
        check(f"{name} on gpu: usable or says why", row["usable"] or row["why_not"], str(row))
    failed = [c for c in checks if not c[1]]
    for name, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
