"""Per model and backend: engine latency p50 at batch 1 and 8, and what measured selection picked.

Run: python bench/backends.py [--runs 30] [--cache-dir DIR]

Each backend's artifact is built (converted + verified, cached) by hpi-triton itself and timed
in-process with the same engine code the served model runs. The baseline is Paddle Inference
(paddle_infer, ONNX Runtime for the ONNX-only model): the table prints each backend's ratio to
it. Then the model is built again with no --backend, so the build measures and picks; the pick
is checked to be within 5% of the fastest backend timed here at batch 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpi_triton.core.model_dir import load_model_dir  # noqa: E402
from hpi_triton.generator import samples, wheel_models  # noqa: E402
from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository  # noqa: E402
from hpi_triton.python_backend import engines
from hpi_triton.triton_models.backends import Device, registry  # noqa: E402
from hpi_triton.triton_models.config import read_pbtxt  # noqa: E402


def pir_model(root: Path) -> Path:
    return wheel_models.random_mobilenet_dir(root / "MobileNetV3_small_random",
                                             {"Global": {"model_name": "MobileNetV3_small_x1_0"}})


def time_runner(runner, feed, runs: int) -> float:
    for _ in range(3):
        runner.run(feed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(feed)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    models = {"PP-OCRv4_mobile_det": dirs["PP-OCRv4_mobile_det"],
              "PP-OCRv4_mobile_rec": dirs["PP-OCRv4_mobile_rec"],
              "MobileNetV3_small (PIR)": pir_model(work),
              "text-line cls (ONNX)": dirs["ch_ppocr_mobile_v2_cls_onnx"]}
    threads = os.cpu_count()
    print(f"# backends benchmark — {platform.processor() or platform.machine()}, "
          f"{threads} threads, {time.strftime('%Y-%m-%d')}")
    print("| model | backend | p50 batch 1 (ms) | p50 batch 8 (ms) | vs baseline (b1) | note |")
    print("|---|---|---|---|---|---|")
    verdicts = []
    for label, path in models.items():
        source = load_model_dir(path)
        rows = {}
        for name in registry.names():
            backend = registry.get(name)
            if backend.not_applicable_reason(source) or backend.unavailable_reason(
                    Device(), "fp32"):
                continue
            out = work / f"{abs(hash(label))}-{name}"
            report = build_repository([ModelRequest("m", path, name)],
                                      BuildOptions(out=out, cache_dir=args.cache_dir))
            if report.models[0].backend != name:
                rows[name] = None
                continue
            config = read_pbtxt(out / "m" / "config.pbtxt")
            params = {k: v.string_value for k, v in config.parameters.items()}
            runner = engines.create_runner(out / "m" / "1", params)
            shapes = samples.opt_shapes(source, config.max_batch_size)
            b1 = time_runner(runner, samples.make_inputs(source, shapes), args.runs)
            b8 = None
            if config.max_batch_size >= 8:
                b8 = time_runner(runner, samples.make_inputs(source, samples.with_batch(
                    shapes, 8)), max(5, args.runs // 4))
            rows[name] = (b1, b8)
        baseline = "paddle_infer" if "paddle_infer" in rows else "onnx_runtime"
        for name, timing in rows.items():
            if timing is None:
                print(f"| {label} | {name} | — | — | — | failed to convert/verify; not served |")
                continue
            b1, b8 = timing
            ratio = rows[baseline][0] / b1 if rows.get(baseline) else float("nan")
            note = "baseline" if name == baseline else ""
            b8_text = f"{b8:.2f}" if b8 is not None else "n/a (max batch < 8)"
            print(f"| {label} | {name} | {b1:.2f} | {b8_text} | {ratio:.2f}x | {note} |")
        measured = build_repository([ModelRequest("m", path)],
                                    BuildOptions(out=work / f"{abs(hash(label))}-measured",
                                                 cache_dir=args.cache_dir)).models[0]
        timed = {n: t[0] for n, t in rows.items() if t is not None}
        fastest = min(timed, key=timed.get)
        gap = timed[measured.backend] / timed[fastest] - 1
        verdicts.append((label, measured.backend, fastest, gap, measured.selection))
    print("\n| model | measured pick | fastest here (b1) | pick slower by | within 5% |")
    print("|---|---|---|---|---|")
    for label, pick, fastest, gap, _ in verdicts:
        print(f"| {label} | {pick} | {fastest} | {gap * 100:.1f}% | "
              f"{'yes' if gap <= 0.05 else 'NO'} |")


if __name__ == "__main__":
    main()
