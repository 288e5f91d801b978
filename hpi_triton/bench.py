"""``hpi-triton bench``: closed-loop load on a served pipeline, like perf_analyzer.

At each concurrency level N, N client threads each send one request, wait for its answer, and
send the next (a closed loop: the offered load is whatever the server sustains). Requests that
finish inside the measurement window count; the warm-up before it does not. Around the window
the server's statistics endpoint (``/v2/models/stats``) is read twice, and the difference splits
each model's time per request into queue / compute-input / compute-infer / compute-output, so a
user sees where the time goes (for a BLS pipeline graph, its compute-infer includes the time it
waits on the models it calls).
"""

from __future__ import annotations

import csv
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from hpi_triton.errors import BenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
STAT_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class ModelTimes:
    """One model's share of a level, from the server's statistics (averages per request)."""

    model: str
    requests: int
    executions: int
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float


@dataclass
class LevelResult:
    """What one concurrency level measured."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float  # successful requests per second
    # None when no request succeeded in the window.
    p50_ms: Optional[float]
    p90_ms: Optional[float]
    p99_ms: Optional[float]
    mean_ms: Optional[float]
    first_error: str = ""
    models: List[ModelTimes] = field(default_factory=list)


@dataclass
class BenchSettings:
    """Settings of one ``hpi-triton bench`` run.

    ``duration`` and ``warmup`` are seconds per concurrency level, ``timeout`` is seconds per
    request, and ``params`` are sent with every request as pipeline parameters.
    """

    url: str
    pipeline: str
    inputs: List[Path]
    concurrency: List[int]
    duration: float = 30.0
    warmup: float = 3.0
    protocol: str = "http"
    params: Dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0


def collect_inputs(items: Sequence[Path]) -> List[Path]:
    """Image files from ``items`` (files, or directories searched for images, sorted)."""
    found: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise BenchError(f"--input {path}: no such file or directory")
    if not found:
        raise BenchError(f"--input {', '.join(map(str, items))}: no images found (looked for "
                         f"{', '.join(IMAGE_SUFFIXES)} files)")
    return found


def parse_levels(text: str) -> List[int]:
    """``"1,2,4"`` → ``[1, 2, 4]``; each level a positive integer."""
    levels = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise BenchError(f"--concurrency {text!r}; expected positive integers separated "
                             f"by commas, e.g. 1,2,4,8")
        levels.append(int(part))
    return levels


def _client(settings: BenchSettings):
    """One connection (a thread's own: tritonclient clients are not shared across threads)."""
    from hpi_triton.client import Client
    from hpi_triton.errors import InferError

    try:
        return Client(settings.url, settings.protocol, settings.timeout)
    except InferError as exc:
        raise BenchError(str(exc)) from exc


def _statistics(client) -> Dict[str, dict]:
    """``{model: {count, executions, <phase>_ns...}}`` summed over versions."""
    stats: Dict[str, dict] = {}
    for entry in client.inference_statistics().get("model_stats", []):
        inference = entry.get("inference_stats", {})
        row = stats.setdefault(entry["name"], {"count": 0, "executions": 0,
                                               **{f"{p}_ns": 0 for p in STAT_PHASES}})
        # gRPC's JSON mapping writes 64-bit counters as strings.
        row["count"] += int(inference.get("success", {}).get("count", 0))
        row["executions"] += int(entry.get("execution_count", 0))
        for phase in STAT_PHASES:
            row[f"{phase}_ns"] += int(inference.get(phase, {}).get("ns", 0))
    return stats


def _model_times(before: Dict[str, dict], after: Dict[str, dict]) -> List[ModelTimes]:
    rows = []
    for name, end in after.items():
        start = before.get(name, {})
        count = end["count"] - start.get("count", 0)
        if count <= 0:
            continue
        per = {p: (end[f"{p}_ns"] - start.get(f"{p}_ns", 0)) / count / 1e6 for p in STAT_PHASES}
        rows.append(ModelTimes(model=name, requests=count,
                               executions=end["executions"] - start.get("executions", 0),
                               queue_ms=round(per["queue"], 3),
                               compute_input_ms=round(per["compute_input"], 3),
                               compute_infer_ms=round(per["compute_infer"], 3),
                               compute_output_ms=round(per["compute_output"], 3)))
    return sorted(rows, key=lambda r: r.model)


def check_pipeline(settings: BenchSettings) -> None:
    """Fail early, naming the fix, when the server or the pipeline is not there."""
    from hpi_triton.errors import InferError

    client = _client(settings)
    try:
        try:
            ready = client.is_model_ready(settings.pipeline)
        except InferError as exc:
            raise BenchError(f"--url {settings.url}: no Triton server answers there "
                             f"({exc.__cause__}); start one with 'hpi-triton serve REPO'"
                             ) from exc
        if not ready:
            raise BenchError(f"--pipeline {settings.pipeline!r} is not a ready model at "
                             f"{settings.url}; the repository's graphs are named as in "
                             f"'hpi-triton build' output (e.g. OCR)")
    finally:
        client.close()


def run_level(settings: BenchSettings, payloads: List[bytes], concurrency: int,
              tick: Optional[Callable[[float, int], None]] = None) -> LevelResult:
    """Run one level: warm-up, then ``settings.duration`` seconds measured."""
    clients = [_client(settings) for _ in range(concurrency)]
    stats_client = _client(settings)
    lock = threading.Lock()
    latencies: List[float] = []
    errors: List[str] = []
    stop = threading.Event()
    window: Dict[str, float] = {}

    def worker(index: int) -> None:
        client = clients[index]
        position = index
        while not stop.is_set():
            payload = payloads[position % len(payloads)]
            position += concurrency
            started = time.perf_counter()
            try:
                # What a user's call costs: the request, and the result parsed.
                client.predict(settings.pipeline, payload, **settings.params)
                failure = None
            except Exception as exc:  # counted, not fatal: the server may refuse one image
                failure = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else \
                    type(exc).__name__
            finished = time.perf_counter()
            opened = window.get("start")
            if opened is None or started < opened or finished > window.get("end", 1e30):
                continue
            with lock:
                if failure is None:
                    latencies.append((finished - started) * 1e3)
                else:
                    errors.append(failure)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True)
               for i in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    total = settings.warmup + settings.duration
    try:
        while True:
            elapsed = time.perf_counter() - began
            if "start" not in window and elapsed >= settings.warmup:
                before = _statistics(stats_client)
                window["start"] = time.perf_counter()
                window["end"] = window["start"] + settings.duration
            if elapsed >= total:
                break
            if tick is not None:
                tick(min(elapsed, total), len(latencies) + len(errors))
            time.sleep(min(0.2, max(total - elapsed, 0.01)))
        after = _statistics(stats_client)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=settings.timeout)
        for client in clients + [stats_client]:
            client.close()
    seconds = window["end"] - window["start"]
    if tick is not None:
        tick(total, len(latencies) + len(errors))
    def stat(reduce, *args) -> Optional[float]:
        return round(float(reduce(latencies, *args)), 2) if latencies else None

    return LevelResult(
        concurrency=concurrency, requests=len(latencies), errors=len(errors),
        seconds=round(seconds, 3), throughput=round(len(latencies) / seconds, 3),
        p50_ms=stat(np.percentile, 50), p90_ms=stat(np.percentile, 90),
        p99_ms=stat(np.percentile, 99), mean_ms=stat(np.mean),
        first_error=errors[0] if errors else "",
        models=_model_times(before, after))


def run_bench(settings: BenchSettings,
              progress: Optional[Callable[[int, float, float, int], None]] = None
              ) -> List[LevelResult]:
    """Every level of ``settings.concurrency`` in turn.

    ``progress(level, elapsed_s, total_s, requests_so_far)`` is called a few times a second.
    """
    if settings.duration <= 0 or settings.warmup < 0:
        raise BenchError(f"--duration {settings.duration} / --warmup {settings.warmup}; expected "
                         f"a positive duration and a warm-up of 0 or more seconds")
    check_pipeline(settings)
    payloads = [p.read_bytes() for p in settings.inputs]
    empty = [str(p) for p, b in zip(settings.inputs, payloads) if not b]
    if empty:
        raise BenchError(f"--input: empty files {empty}; give images")
    results = []
    for level in settings.concurrency:
        total = settings.warmup + settings.duration

        def tick(elapsed: float, done: int, level: int = level, total: float = total) -> None:
            if progress is not None:
                progress(level, elapsed, total, done)

        results.append(run_level(settings, payloads, level, tick))
    return results


def summary(settings: BenchSettings, results: List[LevelResult]) -> dict:
    """The run as one JSON-ready dict: its settings and, per level, throughput, latencies,
    errors and where the time went."""
    return {"url": settings.url, "pipeline": settings.pipeline, "protocol": settings.protocol,
            "inputs": [str(p) for p in settings.inputs], "duration_s": settings.duration,
            "warmup_s": settings.warmup, "params": settings.params,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "levels": [asdict(r) for r in results]}


CSV_FIELDS = ("concurrency", "requests", "errors", "seconds", "throughput", "p50_ms", "p90_ms",
              "p99_ms", "mean_ms")


def write_outputs(settings: BenchSettings, results: List[LevelResult], out_dir: Path
                  ) -> Dict[str, Path]:
    """``bench.json`` (everything), ``bench.csv`` (one row per level),
    ``bench_models.csv`` (the statistics split) and ``bench.png`` (the plot)."""
    from hpi_triton.charts import plot_bench

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "bench.json", "csv": out_dir / "bench.csv",
             "models_csv": out_dir / "bench_models.csv", "png": out_dir / "bench.png"}
    paths["json"].write_text(json.dumps(summary(settings, results), indent=2) + "\n")
    with open(paths["csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in results:
            writer.writerow({k: getattr(r, k) for k in CSV_FIELDS})
    model_fields = ["concurrency"] + [f for f in ModelTimes.__dataclass_fields__]
    with open(paths["models_csv"], "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=model_fields)
        writer.writeheader()
        for r in results:
            for m in r.models:
                writer.writerow({"concurrency": r.concurrency, **asdict(m)})
    plot_bench(results, paths["png"], title=f"{settings.pipeline} at {settings.url} "
               f"({settings.protocol})")
    return paths
