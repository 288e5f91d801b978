"""OCR throughput on realistic pages: the served default and fast modes against RapidOCR 1.4.4
and PaddleX 3.7.2 in-process, with the per-stage split and the share of the compute floor.

    python bench/ocr.py [--set realistic|short] [--pages 24] [--clients 1 4]
                        [--concurrency 4] [--paddlex-python ~/pdx/bin/python]

Pages: ``realistic`` (default) are 640-1400 px a side with 10-16 lines of mixed length
(hpi_triton.pages.make_realistic_pages, seed 3); ``short`` is the older set of 960x530 pages
with 5 short lines. Baselines, one page at a time in this process: RapidOCR 1.4.4
(rapidocr_onnxruntime, its defaults: PP-OCRv4 mobile det/rec + mobile v2 line classifier on
ONNX Runtime) and, with ``--paddlex-python``, PaddleX 3.7.2's own OCR pipeline in its own
environment (numpy 2) on the same model dirs. Ours, built from the same models as a user
builds them: **default** (``hpi-triton build --pipeline OCR --concurrency N``: PaddleX's
results) and **fast** (``--fast --concurrency N``: gated int8 + width buckets), each served by
a real tritonserver over gRPC. Each served mode is read three times: a first pass at the
highest client count (every page size new to the server), then each client count again
(sizes seen; OpenVINO keeps kernels per input shape, as a long-running server does for
recurring page sizes). RapidOCR is timed on a first and a second pass too.

The compute floor: the fp32 multiply-adds of the engine calls the default graph makes per
page (counted per call from the OpenVINO models at the shapes the graph sends), against
cores x clock x fp32 FLOP/cycle: 64 where the FMA pipes are 512 bits wide (AMD Zen 5, Intel
AVX-512 server cores), else 32 (two 256-bit FMA pipes: AVX2 CPUs, Zen 4's double-pumped
AVX-512).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import machine, model_stats, percentiles, predict_loop  # noqa: E402
from hpi_triton import wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.generator.layout import LayoutTransform  # noqa: E402
from hpi_triton.generator.local_ocr import LocalOCR  # noqa: E402
from hpi_triton.generator.quantize import QuantizeTransform  # noqa: E402
from hpi_triton.pages import cer, make_pages, make_realistic_pages  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402


def flop_per_cycle(cpuinfo: str) -> int:
    """Peak fp32 FLOP per cycle per core: 2 FMA pipes x lanes x 2 (see the module docstring)."""
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split())
    family = int(re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M).group(1))
    amd = "AuthenticAMD" in cpuinfo
    wide = "avx512f" in flags and (not amd or family >= 26)
    return 64 if wide else 32


def run_rapidocr(pages):
    """Two passes of RapidOCR over ``pages``: [(img/s, p50, p95, CER)] each."""
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    engine(make_pages(1, seed=99)[0].image)  # warm-up on another page
    passes = []
    for _ in range(2):
        predictions, latencies = [], []
        start = time.perf_counter()
        for page in pages:
            t0 = time.perf_counter()
            result, _ = engine(page.image)
            latencies.append((time.perf_counter() - t0) * 1e3)
            predictions.append([line[1] for line in (result or [])])
        passes.append((len(pages) / (time.perf_counter() - start), *percentiles(latencies),
                       cer(predictions, pages)))
    return passes


def run_paddlex(python, repo, pages, tmp):
    """PaddleX 3.7.2's OCR pipeline on the default build's model dirs: (img/s, p50, p95, CER)."""
    from hpi_triton.compare import run_paddlex as run
    from hpi_triton.compare.paddlex_config import paddlex_job

    paths = []
    for i, page in enumerate(pages):
        paths.append(str(tmp / f"page_{i:03d}.png"))
        cv2.imwrite(paths[-1], page.image)
    warmup = str(tmp / "warmup.png")
    cv2.imwrite(warmup, make_pages(1, seed=99)[0].image)
    report = json.loads((repo / "build_report.json").read_text())
    job = dict(paddlex_job(report, "OCR", paths, {}), warmup=warmup)
    records = {r["input"]: r for r in run(python, job) if "res" in r}
    seconds = [records[p]["seconds"] for p in paths]
    texts = [records[p]["res"]["rec_texts"] for p in paths]
    return (len(paths) / sum(seconds), *percentiles([s * 1e3 for s in seconds]),
            cer(texts, pages))


def build(out, dirs, params, transforms):
    spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                 "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
                                 "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]},
                         params=params)
    return build_repository([], BuildOptions(out=out, transforms=transforms), [spec])


def serve_mode(repo, pages, encoded, clients):
    """Rows (label, img/s, p50, p95, CER) and the per-model statistics of the last run."""
    rows, split = [], {}
    with TritonServer(repo, 0, 0, 0) as server:
        url = server.grpc_url
        most = max(clients)
        ips, p50, p95, results = predict_loop(url, "OCR", encoded, most)
        rows.append((f"first pass, {most} clients", ips, p50, p95,
                     cer([r["rec_texts"] for r in results], pages)))
        for count in clients:
            before = model_stats(url)
            ips, p50, p95, results = predict_loop(url, "OCR", encoded, count)
            after = model_stats(url)
            rows.append((f"{count} client(s)", ips, p50, p95,
                         cer([r["rec_texts"] for r in results], pages)))
            split = {name: {k: (after[name][k] - before.get(name, {}).get(k, 0)) / len(pages)
                            for k in after[name]} for name in after}
    return rows, split


def conv_flops(model, shape) -> float:
    """fp32 FLOPs (2 per multiply-add) of ``model``'s convolutions and matmuls at ``shape``."""
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    total = 0.0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "GroupConvolution"):
            out = list(op.get_output_shape(0))
            weights = op.input(1).get_shape()
            per_output = int(np.prod(weights[-3:])) if kind == "GroupConvolution" else \
                int(np.prod(weights[1:]))
            total += 2.0 * int(np.prod(out)) * per_output
        elif kind == "ConvolutionBackpropData":
            data, weights = op.input(0).get_shape(), op.input(1).get_shape()
            total += 2.0 * int(np.prod(data)) * int(np.prod(weights[1:]))
        elif kind == "MatMul":
            a = op.input(0).get_shape()
            k = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
            total += 2.0 * int(np.prod(list(op.get_output_shape(0)))) * int(k)
    return total


def compute_floor(repo, pages):
    """(GFLOP per page, GFLOP/s peak, floor img/s) of the default graph on ``pages``."""
    import openvino as ov

    ocr = LocalOCR.load(repo, "OCR")
    shapes = {role: [] for role in ocr.models}
    runners = {role: ocr.runner(role) for role in ocr.models}

    def recorder(role):
        def call(batch):
            shapes[role].append(tuple(np.shape(batch)))
            return runners[role](batch)
        return call

    flow = ocr.flow({role: recorder(role) for role in ocr.models})
    for page in pages:
        flow.run(page.image)
    core, total, cache = ov.Core(), 0.0, {}
    for role, seen in shapes.items():
        path = str(repo / ocr.models[role] / "1" / "model.xml")
        for shape in seen:
            if (role, shape) not in cache:
                cache[(role, shape)] = conv_flops(core.read_model(path), shape)
            total += cache[(role, shape)]
    cpuinfo = Path("/proc/cpuinfo").read_text()
    mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", cpuinfo))
    peak = (os.cpu_count() or 1) * mhz * 1e6 * flop_per_cycle(cpuinfo)
    per_page = total / len(pages)
    return per_page / 1e9, peak / 1e9, peak / per_page


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("realistic", "short"), default="realistic")
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, default=4,
                        help="clients the builds choose their engine layout for (0: default)")
    parser.add_argument("--paddlex-python", default=os.environ.get("HPI_TRITON_PADDLEX_PYTHON"))
    args = parser.parse_args()
    pages = (make_realistic_pages(args.pages, seed=3) if args.set == "realistic"
             else make_pages(args.pages, seed=1))
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    layout = [LayoutTransform(args.concurrency)] if args.concurrency else []
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        tmp = Path(tmp)
        reports = {"default": build(tmp / "default", dirs, {}, list(layout)),
                   "fast": build(tmp / "fast", dirs, {"text_rec_batching": "width_buckets"},
                                 [QuantizeTransform(), *layout])}
        gflop, peak, floor = compute_floor(tmp / "default", pages)
        print(f"compute floor: {gflop:.1f} GFLOP/page, {peak:.0f} GFLOP/s, {floor:.2f} img/s",
              file=sys.stderr, flush=True)
        rapid = run_rapidocr(pages)
        print(f"RapidOCR: {rapid}", file=sys.stderr, flush=True)
        rows = [("RapidOCR 1.4.4 in-process, first pass", *rapid[0]),
                ("RapidOCR 1.4.4 in-process, second pass (baseline)", *rapid[1])]
        if args.paddlex_python:
            try:
                rows.append(("PaddleX 3.7.2 in-process", *run_paddlex(
                    args.paddlex_python, tmp / "default", pages, tmp)))
            except Exception as exc:  # the served rows are still worth printing
                print(f"PaddleX baseline failed: {exc}", file=sys.stderr)
        splits = {}
        for mode in reports:
            served, splits[mode] = serve_mode(tmp / mode, pages, encoded, args.clients)
            rows += [(f"hpi-triton {mode}, {label}", *rest) for label, *rest in served]
            print(f"{mode}: {served}", file=sys.stderr, flush=True)
    base = rapid[1][0]
    lines = sum(len(p.lines) for p in pages)
    print(f"# OCR benchmark — {machine()}; {time.strftime('%Y-%m-%d')}; {len(pages)} "
          f"{args.set} pages ({lines / len(pages):.1f} lines each, "
          f"{min(p.image.shape[1] for p in pages)}-{max(p.image.shape[1] for p in pages)} px "
          f"wide); gRPC; compute floor {gflop:.1f} GFLOP/page at {peak:.0f} GFLOP/s fp32 peak "
          f"= {floor:.2f} img/s")
    for mode, report in reports.items():
        engines = ", ".join(f"{m.name.split('_', 1)[1]}={m.backend}" for m in report.models)
        lay = report.transforms.get("layout", {}).get("chosen")
        quant = [q.get("chosen") for q in report.transforms.get("quantize", [])]
        print(f"#   {mode}: {engines}; layout {lay}; int8: {quant or 'none'}")
    print("| run | img/s | p50 ms | p95 ms | CER | img/s vs RapidOCR | share of floor |")
    print("|---|---|---|---|---|---|---|")
    for name, ips, p50, p95, error in rows:
        print(f"| {name} | {ips:.2f} | {p50:.0f} | {p95:.0f} | {error * 100:.2f}% | "
              f"{ips / base:.2f}x | {ips / floor:.0%} |")
    print(f"\nPer stage at {max(args.clients)} clients (ms per page from Triton's statistics; "
          f"the graph's compute includes waiting on its engine calls):")
    print("| mode | model | requests/page | queue | compute |")
    print("|---|---|---|---|---|")
    for mode, split in splits.items():
        for name in sorted(split):
            print(f"| {mode} | {name} | {split[name]['requests']:.2f} | "
                  f"{split[name]['queue_ms']:.1f} | {split[name]['compute_ms']:.1f} |")
    for q in reports["fast"].transforms.get("quantize", []):
        print(f"\nfast build's int8 gate: fp32 {q.get('fp32')}")
        for c in q.get("candidates", []):
            print(f"  {c}")


if __name__ == "__main__":
    main()
