"""Faults and a soak on the served OCR pipeline: bad inputs mixed with valid requests over HTTP
and gRPC, a stub killed with SIGKILL in the middle, then a long closed-loop run with the
server's memory sampled.

Run: python bench/faults.py [--soak 1800] [--clients 16] [--malloc default|tuned]

Baseline: the served results of the same pages before any fault (the answer every later
request must give). Prints, per phase: requests, correct results, wrong results, refused bad
inputs with the right code (HTTP 400 / gRPC INVALID_ARGUMENT), wrong codes, "unavailable"
answers while the killed model was reloaded, hangs (no answer within 120 s), the recovery
time, and the memory (PSS of tritonserver + stubs) at start, after the faults and over the
soak, with its growth from the first to the last tenth of the soak. Writes
bench-results/faults.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hpi_triton import Client, wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.errors import (  # noqa: E402
    InferError,
    InvalidRequestError,
    ServiceUnavailableError,
)
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.server import TritonServer, server_memory, stub_processes  # noqa: E402
from tests.support.ocr_dataset import make_pages  # noqa: E402


def _png(image) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def bad_inputs(good: bytes):
    """(name, bytes, parameters) of requests that are the client's mistake."""
    huge = _png(np.full((6000, 7000), 255, np.uint8))  # 42 MP > the 40 MP default
    return [
        ("empty", b"", {}),
        ("garbage", os.urandom(4096), {}),
        ("truncated png", good[: len(good) // 3], {}),
        ("text", b"this is not an image", {}),
        ("1x1 image", _png(np.zeros((1, 1, 3), np.uint8)), {}),
        ("over max_pixels", huge, {}),
        ("unknown parameter", good, {"nope": 1}),
        ("bad parameter value", good, {"limit_type": "diagonal"}),
        ("out-of-range parameter", good, {"box_thresh": 7}),
    ]


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}
        self.examples = {}

    def add(self, key, example=None):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if example is not None and key not in self.examples:
                self.examples[key] = example[:300]


def run_valid(url, protocol, pages, expected, stop, tally, phase):
    client = Client(url, protocol, timeout=120)
    order = list(range(len(pages)))
    random.Random(hash((url, protocol, threading.get_ident()))).shuffle(order)
    i = 0
    while not stop.is_set():
        index = order[i % len(order)]
        i += 1
        try:
            texts = client.predict("OCR", pages[index])["rec_texts"]
        except ServiceUnavailableError as exc:
            tally.add(f"{phase}: unavailable", str(exc))
            time.sleep(0.2)
            continue
        except InferError as exc:
            key = "hang" if "timed out" in str(exc).lower() else "server fault"
            tally.add(f"{phase}: {key}", str(exc))
            continue
        tally.add(f"{phase}: correct" if texts == expected[index] else f"{phase}: WRONG",
                  None if texts == expected[index] else f"{index}: {texts}")


def run_bad(url, protocol, cases, stop, tally, phase):
    client = Client(url, protocol, timeout=120)
    i = 0
    while not stop.is_set():
        name, data, params = cases[i % len(cases)]
        i += 1
        try:
            client.predict("OCR", data, **params)
            tally.add(f"{phase}: bad input ACCEPTED", name)
        except InvalidRequestError:
            tally.add(f"{phase}: bad input refused (400)")
        except ServiceUnavailableError:
            tally.add(f"{phase}: unavailable")
        except InferError as exc:
            tally.add(f"{phase}: bad input WRONG CODE", f"{name}: {exc}")


def sample_memory(server, samples, stop, every=10.0):
    while not stop.wait(every):
        samples.append((time.monotonic(), sum(server_memory(server.process.pid).values())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--soak", type=float, default=1800, help="seconds of the soak phase")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--fault-seconds", type=float, default=90)
    parser.add_argument("--malloc", choices=["default", "tuned"], default="default")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()
    os.environ["HPI_TRITON_MALLOC"] = args.malloc

    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    repo = Path(args.out) / "faults-repo"
    spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                 "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
                                 "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]})
    build_repository([], BuildOptions(out=repo, force=True), [spec])
    pages = [_png(p.image) for p in make_pages(24, seed=11, lines_per_page=10)]
    cases = bad_inputs(pages[0])
    tally, report = Tally(), {"machine": platform.processor() or platform.machine()}
    with TritonServer(repo, 0, 0, 0) as server:
        urls = {"http": server.http_url, "grpc": server.grpc_url}
        reference = Client(server.grpc_url, "grpc")
        expected = [reference.predict("OCR", p)["rec_texts"] for p in pages]
        memory = {"start": sum(server_memory(server.process.pid).values())}

        # Phase 1: valid and bad requests over both protocols, a stub killed in the middle.
        stop = threading.Event()
        threads = [threading.Thread(target=run_valid, args=(urls[p], p, pages, expected, stop,
                                                            tally, "faults"))
                   for p in ("http", "grpc") for _ in range(2)]
        threads += [threading.Thread(target=run_bad, args=(urls[p], p, cases, stop, tally,
                                                           "faults"))
                    for p in ("http", "grpc")]
        for thread in threads:
            thread.start()
        time.sleep(args.fault_seconds / 2)
        victim = stub_processes(server.process.pid)["OCR_TextRecognition"][0]
        os.kill(victim, signal.SIGKILL)
        time.sleep(args.fault_seconds / 2)
        stop.set()
        for thread in threads:
            thread.join()
        report["recoveries"] = server.supervisor.recoveries
        memory["after faults"] = sum(server_memory(server.process.pid).values())

        # Phase 2: the soak.
        stop, samples = threading.Event(), []
        sampler = threading.Thread(target=sample_memory, args=(server, samples, stop))
        threads = [threading.Thread(target=run_valid,
                                    args=(urls["grpc" if i % 2 else "http"],
                                          "grpc" if i % 2 else "http", pages, expected, stop,
                                          tally, "soak"))
                   for i in range(args.clients)]
        sampler.start()
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while time.monotonic() - started < args.soak:
            time.sleep(5)
            if server.process.poll() is not None:
                tally.add("soak: SERVER EXITED")
                break
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
            if thread.is_alive():
                tally.add("soak: hang")
        sampler.join()
        elapsed = time.monotonic() - started
        tenth = max(1, len(samples) // 10)
        first = float(np.mean([m for _, m in samples[:tenth]])) if samples else 0.0
        last = float(np.mean([m for _, m in samples[-tenth:]])) if samples else 0.0
        memory.update({"soak first tenth": first, "soak last tenth": last,
                       "soak max": max((m for _, m in samples), default=0.0),
                       "growth %": 100.0 * (last - first) / first if first else 0.0})
        report["soak_seconds"] = elapsed
        report["soak_requests_per_s"] = tally.counts.get("soak: correct", 0) / elapsed
        crashed = server.process.poll() is not None
    report.update({"counts": tally.counts, "examples": tally.examples, "memory_mb": memory,
                   "server_crashed": crashed, "malloc": args.malloc,
                   "date": time.strftime("%Y-%m-%d"), "clients": args.clients})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1))
    print("| phase: outcome | count |\n|---|---|")
    for key in sorted(tally.counts):
        print(f"| {key} | {tally.counts[key]} |")
    for model, took in report["recoveries"]:
        print(f"recovered {model} in {took:.1f} s")
    print("memory (PSS MB): " + ", ".join(f"{k} {v:.0f}" for k, v in memory.items()))
    print(f"soak: {elapsed:.0f} s at {args.clients} clients, "
          f"{report['soak_requests_per_s']:.2f} correct pages/s; server crashed: {crashed}")
    for key, example in tally.examples.items():
        print(f"  e.g. {key}: {example}")


if __name__ == "__main__":
    main()
