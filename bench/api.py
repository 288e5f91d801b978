"""PaddleX's serving API (``POST /ocr``) against calling tritonserver directly over gRPC, and
optionally against PaddleX 3.7.2's own basic serving, with one client program on one page set.

    python bench/api.py [--pages 24] [--clients 1 4 16] [--repository REPO]
                        [--paddlex-python ~/pdx/bin/python]

The OCR pipeline (PP-OCRv4 mobile det/rec from the PyPI wheels, PaddleX's defaults) is built
into REPO (or a temporary folder), served by ``hpi-triton serve`` with its API; every client
sends each page as PaddleX's docs do (JSON, base64 PNG, ``fileType`` 1, ``visualize``
false) and reads ``rec_texts``. The direct rows send the same PNG bytes to the graph with
``hpi_triton.Client`` over gRPC. After one warm-up pass per target, each client count runs
``--rounds`` alternating rounds of the API and direct gRPC (a machine whose load drifts then
touches both alike). Prints a
Markdown table: median pages/s, p50 and p99 ms per client count, the API's throughput as a
share of direct gRPC, and CPU seconds per page of the processes that served it (the API
process + tritonserver with its stubs): on a CPU-bound machine the API's share of that CPU is
what it costs in throughput.
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
from hpi_triton.server import child_processes, free_port  # noqa: E402


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


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its live descendants."""
    from hpi_triton.server import child_processes

    ticks = os.sysconf("SC_CLK_TCK")
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError):
            continue
        stack += [child for child, _ in child_processes(current)]
    return total


def run_level(call, count: int, clients: int, sample: list) -> tuple:
    """One closed-loop pass; (pages/s, results), latencies appended to ``sample``."""
    latencies = []

    def timed(i):
        start = time.perf_counter()
        out = call(i)
        latencies.append((time.perf_counter() - start) * 1000)
        return out

    rate, _, _, results = closed_loop(timed, count, clients)
    sample += latencies
    return rate, results


def compare_levels(targets: dict, count: int, clients_list, rounds: int, cpu=None) -> dict:
    """Alternating rounds of every target at each client count (load drifting over time
    then touches all alike); per target and count: median pages/s, p50, p99, results, and
    the CPU seconds per page ``cpu(name)`` reports."""
    for call in targets.values():
        closed_loop(call, count, max(clients_list))  # warm-up: every page size seen once
    found = {}
    for clients in clients_list:
        rates = {name: [] for name in targets}
        samples = {name: [] for name in targets}
        cpu_used = {name: 0.0 for name in targets}
        results = {}
        for _ in range(rounds):
            for name, call in targets.items():
                before = cpu(name) if cpu else {}
                rate, results[name] = run_level(call, count, clients, samples[name])
                if cpu:
                    after = cpu(name)
                    cpu_used[name] += sum(after[k] - before[k] for k in after)
                rates[name].append(rate)
        for name in targets:
            row = (float(np.median(rates[name])), float(np.percentile(samples[name], 50)),
                   float(np.percentile(samples[name], 99)), results[name],
                   cpu_used[name] / (count * rounds) if cpu else None, rates[name])
            found[(name, clients)] = row
            print(f"{name:<22} {clients:>2} clients {row[0]:6.3f} pages/s  p50 {row[1]:7.0f} ms"
                  f"  p99 {row[2]:7.0f} ms  rounds {[round(r, 3) for r in rates[name]]}",
                  flush=True)
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
    parser.add_argument("--rounds", type=int, default=3,
                        help="Alternating rounds of the API and direct gRPC per client count")
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
    try:
        wait_health(api_url)
        clients = {}

        def direct(i):
            import threading

            key = threading.get_ident()
            if key not in clients:
                clients[key] = Client(grpc_url, "grpc")
            return clients[key].predict("OCR", pngs[i % len(pngs)])["rec_texts"]

        children = dict(child_processes(serve.pid))
        api_pid = next(p for p, argv in children.items() if b"api" in argv)
        triton_pid = next(p for p, argv in children.items() if b"api" not in argv)

        def cpu(name):
            found = {"triton": tree_cpu(triton_pid)}
            if name.startswith("hpi-triton API"):
                found["api"] = tree_cpu(api_pid)
            return found

        targets = {"hpi-triton API /ocr": lambda i: post_ocr(api_url, pngs[i]),
                   "direct Triton gRPC": direct}
        before_api = tree_cpu(api_pid)
        ours = compare_levels(targets, len(pngs), args.clients, args.rounds, cpu)
        api_cpu = tree_cpu(api_pid) - before_api
        for level in args.clients:
            assert ours[("hpi-triton API /ocr", level)][3] == \
                ours[("direct Triton gRPC", level)][3], "the API's texts differ from gRPC"
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(120)
    if args.paddlex_python:
        with paddlex_server(args.paddlex_python, repo, tmp) as server:
            ours.update(compare_levels(
                {"PaddleX 3.7.2 serving": lambda i: post_ocr(server.url, pngs[i])},
                len(pngs), [c for c in args.clients if c <= 4], 1))
    report(args, ours, api_cpu)


def report(args, rows: dict, api_cpu: float) -> None:
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(f"`python bench/api.py --pages {args.pages} --clients "
          f"{' '.join(map(str, args.clients))} --rounds {args.rounds}"
          + (" --paddlex-python ...`" if args.paddlex_python else "`"))
    api_pages = args.pages * (1 + args.rounds * len(args.clients))  # with the warm-up pass
    print(f"API process CPU over every API pass: {api_cpu:.1f} s, "
          f"{api_cpu / api_pages:.3f} s per page")
    print("\n| server | clients | pages/s (median of rounds) | p50 ms | p99 ms | vs direct gRPC "
          "(medians) | vs direct gRPC (median of paired rounds) "
          "| CPU s per page (API + tritonserver) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, level), (rate, p50, p99, _, cpu, rates) in rows.items():
        direct = rows.get(("direct Triton gRPC", level))
        share = f"{rate / direct[0]:.1%}" if direct else ""
        # Round i of each target ran back to back: their ratio cancels the machine's drift.
        paired = (f"{float(np.median([a / b for a, b in zip(rates, direct[5])])):.1%}"
                  if direct and len(rates) == len(direct[5]) else "")
        print(f"| {name} | {level} | {rate:.3f} | {p50:.0f} | {p99:.0f} | {share} | {paired} | "
              f"{'' if cpu is None else f'{cpu:.3f}'} |")


if __name__ == "__main__":
    main()
