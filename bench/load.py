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


def predict_loop(url: str, pipeline: str, payloads: Sequence, clients: int,
                 protocol: str = "grpc", **params):
    """:func:`closed_loop` over ``Client.predict(pipeline, payloads[i], **params)`` from
    ``clients`` threads, each with its own Client (the pool a user writes by hand).
    Returns (items/s, p50 ms, p95 ms, results)."""
    from hpi_triton import Client

    local = threading.local()

    def call(index):
        if not hasattr(local, "client"):
            local.client = Client(url, protocol)
        return local.client.predict(pipeline, payloads[index], **params)

    return closed_loop(call, len(payloads), clients)


def machine() -> str:
    """This machine as the result tables name it: CPU model, cores and the instruction-set
    flags engines care about (hpi-triton doctor's reading of /proc/cpuinfo)."""
    from hpi_triton.doctor import cpu_info

    info = cpu_info()
    flags = " ".join(flag for flag, present in info["flags"].items() if present)
    return f"{info['model']} ({info['logical_cores']} cores; {flags})"


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
