"""PNG charts for ``hpi-triton bench`` and the build report (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, axis, title: str, path: Path) -> Path:
    if title:
        axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def plot_bench(results: Sequence, path: Path, title: str = "") -> Path:
    """Throughput (left axis) and p99 latency (right axis) against concurrency."""
    plt = _pyplot()
    levels = [r.concurrency for r in results]
    figure, left = plt.subplots(figsize=(7, 4.2), dpi=110)
    left.plot(levels, [r.throughput for r in results], "o-", color="tab:blue",
              label="throughput")
    left.set_xlabel("concurrency (requests in flight)")
    left.set_ylabel("throughput (requests/s)", color="tab:blue")
    left.set_xticks(levels)
    left.grid(alpha=0.3)
    right = left.twinx()
    p99 = [float("nan") if r.p99_ms is None else r.p99_ms for r in results]
    right.plot(levels, p99, "s--", color="tab:red", label="p99 latency")
    right.set_ylabel("p99 latency (ms)", color="tab:red")
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    return _save(plt, figure, left, title, path)


def plot_backend_latency(latencies: Dict[str, Dict[str, float]], path: Path,
                         title: str = "") -> Path:
    """Grouped bars: per model, the batch-1 p50 latency of each backend measured.

    Args:
        latencies: ``{model: {backend: ms}}``.
        path: The PNG file to write.
        title: A title above the chart; none when empty.

    Returns:
        ``path``.
    """
    plt = _pyplot()
    models = list(latencies)
    backends: List[str] = sorted({b for per in latencies.values() for b in per})
    width = 0.8 / max(len(backends), 1)
    figure, axis = plt.subplots(figsize=(max(6.0, 1.2 * len(models) + 3), 4.2), dpi=110)
    for k, backend in enumerate(backends):
        xs = [i + (k - (len(backends) - 1) / 2) * width for i, m in enumerate(models)
              if backend in latencies[m]]
        ys = [latencies[m][backend] for m in models if backend in latencies[m]]
        bars = axis.bar(xs, ys, width=width, label=backend)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks(range(len(models)))
    axis.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("latency p50, batch 1 (ms)")
    axis.legend(fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    return _save(plt, figure, axis, title, path)
