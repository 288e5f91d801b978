"""Shared pieces of the benchmarks: a closed-loop load generator and Triton's statistics."""

from __future__ import annotations

import threading
import time
from typing import Callable, List, Sequence, Tuple

import numpy as np


def percentiles(latencies_ms: Sequence[float]) -> Tuple[float, float]:
    return float(np.percentile(latencies_ms, 50)), float(np.percentile(latencies_ms, 95))


def closed_loop(call: Callable[[int], object], count: int, clients: int):
    """Run ``call(i)`` for i in 0..count-1 from ``clients`` threads, each sending its next
    request when the previous one returns. Returns (items/s, p50 ms, p95 ms, results)."""
    results: List[object] = [None] * count
    latencies: List[float] = []
    lock = threading.Lock()
    cursor = iter(range(count))

    def worker():
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                return
            t0 = time.perf_counter()
            result = call(index)
            elapsed = (time.perf_counter() - t0) * 1e3
            with lock:
                latencies.append(elapsed)
                results[index] = result

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return (count / elapsed, *percentiles(latencies), results)


def model_stats(url: str) -> dict:
    """Per-model request count, queue and compute time (ms) from Triton's statistics."""
    import tritonclient.grpc as grpcclient

    stats = grpcclient.InferenceServerClient(url).get_inference_statistics(as_json=True)
    out = {}
    for model in stats["model_stats"]:
        infer = model["inference_stats"]
        out[model["name"]] = {
            "requests": int(infer.get("success", {}).get("count", 0)),
            "executions": int(model.get("execution_count", 0)),
            "queue_ms": int(infer.get("queue", {}).get("ns", 0)) / 1e6,
            "compute_ms": sum(int(infer.get(k, {}).get("ns", 0)) for k in
                              ("compute_input", "compute_infer", "compute_output")) / 1e6,
            "total_ms": int(infer.get("success", {}).get("ns", 0)) / 1e6,
        }
    return out
