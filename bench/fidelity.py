"""OCR fidelity and speed: the default recognition batching (PaddleX's own) against the opt-in
width buckets, on pages of 12 lines of mixed length, both checked line by line against
PaddleX 3.7.2 itself.

The served OCR graph (PP-OCRv4 mobile det/rec from the PyPI wheels) answers both modes in one
run (``text_rec_batching`` per request); rounds alternate the modes at each client count and
the table gives median img/s and its ratio to the default's. With ``--paddlex-python`` (an
environment with paddlex[ocr]==3.7.2), PaddleX's own OCR pipeline reads the same pages once,
and each mode's texts, boxes and scores are compared with it.

    python bench/fidelity.py [--pages 24] [--clients 1 4] [--rounds 3]
                             [--paddlex-python ~/pdx/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import machine, predict_loop  # noqa: E402
from hpi_triton import wheel_models  # noqa: E402
from hpi_triton.compare import run_paddlex  # noqa: E402
from hpi_triton.compare.diff import compare_results, ocr_line_stats  # noqa: E402
from hpi_triton.compare.paddlex_config import paddlex_job  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from tests.support.ocr_dataset import cer, make_pages  # noqa: E402

MODES = ("paddlex", "width_buckets")


def served_run(url, encoded, clients, mode):
    ips, _, _, results = predict_loop(url, "OCR", encoded, clients, text_rec_batching=mode)
    return ips, results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--paddlex-python", default=os.environ.get("HPI_TRITON_PADDLEX_PYTHON"))
    args = parser.parse_args()
    pages = make_pages(args.pages, seed=11, lines_per_page=args.lines)
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i, blob in enumerate(encoded):
            paths.append(str(tmp / f"page_{i:03d}.png"))
            Path(paths[-1]).write_bytes(blob)
        spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                     "TextRecognition": dirs["PP-OCRv4_mobile_rec"]})
        build_repository([], BuildOptions(out=tmp / "repo"), [spec])
        report = json.loads((tmp / "repo" / "build_report.json").read_text())
        theirs = None
        if args.paddlex_python:
            started = time.perf_counter()
            records = run_paddlex(args.paddlex_python,
                                  paddlex_job(report, "OCR", paths, {}))
            paddlex_seconds = time.perf_counter() - started
            theirs = {r["input"]: r["res"] for r in records if "res" in r}
        rates = {(mode, c): [] for mode in MODES for c in args.clients}
        answers = {}
        with TritonServer(tmp / "repo", 0, 0, 0) as server:
            served_run(server.grpc_url, encoded[:4], 1, "paddlex")  # warm-up
            served_run(server.grpc_url, encoded[:4], 1, "width_buckets")
            for _ in range(args.rounds):
                for clients in args.clients:
                    for mode in MODES:
                        ips, results = served_run(server.grpc_url, encoded, clients, mode)
                        rates[(mode, clients)].append(ips)
                        answers[mode] = results
    lines = sum(len(p.lines) for p in pages)
    print(f"\nmachine: {machine()}; "
          f"{time.strftime('%Y-%m-%d')}; {args.pages} pages, {lines} lines "
          f"({args.lines} per page, mixed length), {args.rounds} alternating rounds, gRPC")
    print(f"{'mode':14s} {'clients':>7s} {'img/s (median)':>15s} {'÷ paddlex':>10s}")
    for clients in args.clients:
        base = statistics.median(rates[("paddlex", clients)])
        for mode in MODES:
            median = statistics.median(rates[(mode, clients)])
            print(f"{mode:14s} {clients:7d} {median:15.2f} {median / base:10.2f}")
    print(f"\n{'mode':14s} {'CER %':>6s} {'texts = PaddleX':>16s} {'boxes = PaddleX':>16s} "
          f"{'scores differ':>14s}")
    for mode in MODES:
        error = cer([r["rec_texts"] for r in answers[mode]], pages)
        if theirs is None:
            print(f"{mode:14s} {100 * error:6.2f} {'(no --paddlex-python)':>33s}")
            continue
        pairs = [(ours, theirs.get(path)) for ours, path in zip(answers[mode], paths)]
        texts, boxes, total = ocr_line_stats(pairs)
        scores = sum(d.field.startswith("rec_scores[") for ours, px in pairs if px
                     for d in compare_results(ours, px))
        print(f"{mode:14s} {100 * error:6.2f} {f'{texts}/{total}':>16s} "
              f"{f'{boxes}/{total}':>16s} {scores:14d}")
    if theirs is not None:
        print(f"\nPaddleX 3.7.2 in-process (paddle_static, run_mode paddle, 1 process): "
              f"{len(paths) / paddlex_seconds:.2f} img/s including its start-up")


if __name__ == "__main__":
    main()
