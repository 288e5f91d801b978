"""PaddleX's serving API (``POST /ocr``) against calling tritonserver directly over gRPC, and
optionally against PaddleX 3.7.2's own basic serving, with one client program on one page set.

    python bench/api.py [--pages 24] [--clients 1 4 16] [--repository REPO]
                        [--paddlex-python ~/pdx/bin/python]

The OCR pipeline (PP-OCRv4 mobile det/rec from the PyPI wheels, PaddleX's defaults) is built
into REPO (or a temporary folder), served by ``hpi-triton serve`` with its API; every client
sends each page as PaddleX's docs do (JSON, base64 PNG, ``fileType`` 1, ``visualize``
false) and reads ``rec_texts``. The direct rows send the same PNG bytes to the graph with
``hpi_triton.Client`` over gRPC. Each level is run after one warm-up pass over the pages.
Prints a Markdown table: pages/s, p50 and p99 ms per client count, and the API's throughput
as a share of direct gRPC.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import closed_loop, machine  # noqa: E402
from hpi_triton import Client, wheel_models  # noqa: E402
from hpi_triton.pages import make_realistic_pages  # noqa: E402
from hpi_triton.server import free_port  # noqa: E402


def post_ocr(url: str, png: bytes) -> list:
    """One PaddleX-docs request; the page's texts."""
    body = json.dumps({"file": base64.b64encode(png).decode("ascii"), "fileType": 1,
                       "visualize": False}).encode()
    request = urllib.request.Request(url + "/ocr", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        answer = json.loads(response.read())
    return answer["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]


def wait_health(url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} was not healthy after {timeout:.0f} s")


def levels(name: str, call, count: int, clients_list, rows: list) -> dict:
    closed_loop(call, count, max(clients_list))  # warm-up: every page size seen once
    found = {}
    for clients in clients_list:
        latencies = []

        def timed(i, latencies=latencies):
            start = time.perf_counter()
            out = call(i)
            latencies.append((time.perf_counter() - start) * 1000)
            return out

        rate, _, _, results = closed_loop(timed, count, clients)
        p50, p99 = np.percentile(latencies, 50), np.percentile(latencies, 99)
        rows.append((name, clients, rate, p50, p99))
        found[clients] = (rate, results)
        print(f"{name:<22} {clients:>2} clients {rate:6.3f} pages/s  p50 {p50:7.0f} ms  "
              f"p99 {p99:7.0f} ms", flush=True)
    return found


def build(repo: Path) -> None:
    from hpi_triton.ensembles import pipeline_spec
    from hpi_triton.generator.build import BuildOptions, build_repository

    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec"])
    spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                 "TextRecognition": dirs["PP-OCRv4_mobile_rec"]})
    build_repository([], BuildOptions(out=repo), [spec])


def paddlex_server(python: str, repo: Path, tmp: Path):
    sys.path.insert(0, str(ROOT))
    from tests.support.paddlex_serving import PaddleXServer

    return PaddleXServer(Path(python), repo, "OCR", tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repository", type=Path)
    parser.add_argument("--paddlex-python", default=os.environ.get("HPI_TRITON_PADDLEX_PYTHON"))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    repo = args.repository or tmp / "repo"
    if not (repo / "build_report.json").is_file():
        build(repo)
    pngs = [cv2.imencode(".png", p.image)[1].tobytes()
            for p in make_realistic_pages(args.pages, seed=3)]
    ports = [free_port() for _ in range(4)]
    serve = subprocess.Popen(
        [sys.executable, "-m", "hpi_triton.cli", "serve", str(repo), "--http-port",
         str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
         "--paddlex-api-port", str(ports[3]), "--exit-timeout", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api_url, grpc_url = f"http://127.0.0.1:{ports[3]}", f"127.0.0.1:{ports[1]}"
    rows: list = []
    try:
        wait_health(api_url)
        clients = {}

        def direct(i):
            import threading

            key = threading.get_ident()
            if key not in clients:
                clients[key] = Client(grpc_url, "grpc")
            return clients[key].predict("OCR", pngs[i % len(pngs)])["rec_texts"]

        ours = levels("hpi-triton API /ocr", lambda i: post_ocr(api_url, pngs[i]),
                      len(pngs), args.clients, rows)
        grpc = levels("direct Triton gRPC", direct, len(pngs), args.clients, rows)
        for level in args.clients:
            assert ours[level][1] == grpc[level][1], "the API's texts differ from direct gRPC"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(120)
    paddlex = {}
    if args.paddlex_python:
        with paddlex_server(args.paddlex_python, repo, tmp) as server:
            paddlex = levels("PaddleX 3.7.2 serving", lambda i: post_ocr(server.url, pngs[i]),
                             len(pngs), [c for c in args.clients if c <= 4], rows)
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"`python bench/api.py --pages {args.pages} --clients "
          f"{' '.join(map(str, args.clients))}`" + (" --paddlex-python ..." if paddlex else ""))
    print("\n| server | clients | pages/s | p50 ms | p99 ms | vs direct gRPC |")
    print("|---|---:|---:|---:|---:|---:|")
    direct_rate = {c: grpc[c][0] for c in grpc}
    for name, level, rate, p50, p99 in rows:
        share = f"{rate / direct_rate[level]:.1%}" if level in direct_rate else ""
        print(f"| {name} | {level} | {rate:.3f} | {p50:.0f} | {p99:.0f} | {share} |")


if __name__ == "__main__":
    main()
