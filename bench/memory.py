"""Memory of the served OCR pipeline per engine hosting, and what glibc's malloc settings
trade for it.

Run: python bench/memory.py [--compare hosting|malloc] [--pages 40] [--rounds 4]

Servers on OCR repositories (PP-OCRv4 mobile det/rec + text-line orientation), each alone
while its memory is read (PSS splits shared libraries among every process mapping them), all
up for the speed rounds. ``--compare hosting`` (default): the CLI's default build on CPU
(``graph``: the graph runs its engines, one instance x every core's threads, also what
``--concurrency 4`` chose on the 2-core VMs) and the named baseline ``python`` (separate
engine models, the earlier default). ``--compare malloc``: one
python-hosted repository served with glibc's malloc (what ``hpi-triton serve`` uses) and the
baseline ``tuned`` (``--malloc tuned``: up to 128 MiB of freed memory kept per arena).

For each it prints the proportional memory (PSS of tritonserver + stubs, MB) at start, after
the ordinary pages (realistic: 640-1400 px, ~13 lines), 30 s after three valid 4000x9000
pages, the peak during one worst-case request under the defaults (a 40 MP square page:
``max_pixels`` 40,000,000, detection at ``max_side_limit`` 4000) and 30 s after it; then OCR
throughput at 4 clients over gRPC in alternating rounds (img/s, median of the rounds, and the
paired ratio against the baseline).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import closed_loop  # noqa: E402
from hpi_triton import Client, wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.pages import make_realistic_pages  # noqa: E402
from hpi_triton.server import TritonServer, server_memory  # noqa: E402


def _png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def large_page(height: int, width: int, lines: int) -> bytes:
    page = np.full((height, width, 3), 255, np.uint8)
    for row in range(lines):
        cv2.putText(page, f"Line {row} of a very large scanned page, 2026", (60, 300 + row *
                    (height - 400) // lines), cv2.FONT_HERSHEY_SIMPLEX, 3.0, (0, 0, 0), 6)
    return _png(page)


def total(server) -> float:
    return sum(server_memory(server.process.pid).values())


def peak_during(server, call) -> float:
    peak, done = [0.0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], total(server))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return peak[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--compare", choices=("hosting", "malloc"), default="hosting")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    roles = {"TextDetection": dirs["PP-OCRv4_mobile_det"],
             "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
             "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]}
    # mode -> (hosting, graph instances, malloc); the last is the named baseline.
    modes = ({"graph": ("graph", 1, "default"), "python": ("python", 2, "default")}
             if args.compare == "hosting" else
             {"default": ("python", 2, "default"), "tuned": ("python", 2, "tuned")})
    repos = {}
    for mode, (hosting, instances, _) in modes.items():
        repo = ROOT / "bench-results" / f"memory-repo-{hosting}-{instances}"
        if repo not in repos.values():
            build_repository([], BuildOptions(out=repo, force=True, hosting=hosting),
                             [pipeline_spec("OCR", roles, instances=instances)])
        repos[mode] = repo
    pages = [_png(p.image) for p in make_realistic_pages(args.pages, seed=3)]
    big = large_page(9000, 4000, 24)
    worst = large_page(6320, 6320, 16)  # 39.9 MP: just under the default max_pixels
    def start(mode):
        os.environ["HPI_TRITON_MALLOC"] = modes[mode][2]
        try:
            return TritonServer(repos[mode], 0, 0, 0, exit_timeout=5).start()
        finally:
            os.environ.pop("HPI_TRITON_MALLOC")

    baseline = list(modes)[-1]
    rows, servers = {}, {}
    try:
        # Memory with one server up at a time: PSS splits shared libraries among every
        # process mapping them, so servers up together would each look smaller.
        for mode in modes:
            server = servers[mode] = start(mode)
            client = Client(server.grpc_url, "grpc")
            row = {"start": total(server)}
            for page in pages:
                client.predict("OCR", page)
            row["after ordinary pages"] = total(server)
            for _ in range(3):
                client.predict("OCR", big)
            time.sleep(30)
            row["30 s after 3 large pages"] = total(server)
            row["peak, worst-case request"] = peak_during(
                server, lambda c=client: c.predict("OCR", worst))
            time.sleep(30)
            row["30 s after it"] = total(server)
            for page in pages[:10]:
                client.predict("OCR", page)
            row["after 10 more ordinary pages"] = total(server)
            rows[mode] = row
            servers.pop(mode).stop()
        servers = {mode: start(mode) for mode in modes}
        speeds = {mode: [] for mode in servers}
        for _ in range(args.rounds):
            for mode, server in servers.items():
                clients = [Client(server.grpc_url, "grpc") for _ in range(4)]
                # One client object per thread (tritonclient's are not thread-safe).
                per_thread = {}

                def call_one(i, clients=clients, per_thread=per_thread):
                    key = threading.get_ident()
                    if key not in per_thread:
                        per_thread[key] = clients[len(per_thread) % 4]
                    return per_thread[key].predict("OCR", pages[i % len(pages)])

                rate, *_ = closed_loop(call_one, len(pages), 4)
                speeds[mode].append(rate)
    finally:
        for server in servers.values():
            server.stop()
    flags = sorted({f for f in open("/proc/cpuinfo").read().split()
                    if f.startswith(("avx512f", "amx", "avx2"))})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"flags {' '.join(flags)}; date {time.strftime('%Y-%m-%d')}")
    print("| PSS of tritonserver + stubs, MB | " + " | ".join(
        f"{m} (baseline)" if m == baseline else m for m in modes) + " |")
    print("|---|" + "---|" * len(modes))
    for key in rows[baseline]:
        print(f"| {key} | " + " | ".join(f"{rows[m][key]:.0f}" for m in modes) + " |")
    print(f"| OCR img/s at 4 clients (median of {args.rounds}) | " + " | ".join(
        f"{statistics.median(speeds[m]):.2f}" for m in modes) + " |")
    for mode in modes:
        if mode != baseline:
            ratios = [d / t for d, t in zip(speeds[mode], speeds[baseline])]
            print(f"paired ratio {mode}/{baseline} per round: "
                  f"{', '.join(f'{r:.3f}' for r in ratios)} "
                  f"(median {statistics.median(ratios):.3f})")

if __name__ == "__main__":
    main()
