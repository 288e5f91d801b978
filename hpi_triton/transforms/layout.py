"""``hpi-triton build --concurrency N``: where the engines run and their instances × threads,
chosen by serving.

Every way of splitting this machine's cores between engine instances (1 × all cores, 2 × half,
…, one single-thread instance per core), with the engines in the pipeline graphs' processes
(``--hosting graph``: graph instances × engine threads) and as separate engine models
(``--hosting python``), as ``--hosting`` allows (``auto``: both), is written into a copy
of the staged repository or the repository itself in turn, served
by a real tritonserver, and read by ``N`` concurrent clients sending rendered text pages to
each pipeline graph; a layout with more instances is kept only when it serves
:data:`MIN_GAIN` × the img/s of the best with fewer. Which layout wins moves with
the CPU, the models and the concurrency (bench/RESULTS.md, 2026-11-27, OCR on 2 cores: 1 × 2
threads 1.6× the img/s of 2 × 1 at 1 client, 6% more at 4), so it is measured, not fixed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import RepositoryTransform
from hpi_triton.triton_models.config import TritonModelConfig

log = logging.getLogger("hpi_triton.build")

MEASURE_PAGES = 8  # rendered pages per graph per layout (after one warm-up pass)
# A layout with more instances replaces the best so far only when this much faster: runs of
# the same layout vary by a few percent on a shared VM, and more instances cost memory and
# single-client latency (OCR default on 2 cores: 2 x 1 thread won a round by 3% at 4 clients
# and then served 1 client at half the img/s; bench/RESULTS.md).
MIN_GAIN = 1.05
LAYOUT_SEED = 7003


def usable_cores() -> int:
    """Cores this process may run on (its affinity, as a container's cpuset limits it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def layouts(cores: int) -> List[Tuple[int, int]]:
    """(instances, threads per instance) pairs that use exactly ``cores`` cores."""
    return [(n, cores // n) for n in range(1, cores + 1) if cores % n == 0]


class LayoutTransform(RepositoryTransform):
    """Measure each engine layout on the staged repository; keep the fastest.

    Args:
        concurrency: Clients in flight at once, as the user expects in production.
        pages: Rendered pages sent to each graph per layout.
    """

    name = "layout"

    def __init__(self, concurrency: int, pages: int = MEASURE_PAGES):
        self.concurrency = concurrency
        self.pages = pages
        # Set by check(): where the engines may run (--hosting), graphs' engines first,
        # and the models served on their own.
        self.hostings: List[str] = ["python"]
        self.plain_models: List[str] = []

    def check(self, plain_models, pipelines, options) -> None:
        """Refuse builds the measurement cannot drive.

        Raises:
            BuildError: no pipeline graph to send pages to, or not a CPU build.
        """
        if self.concurrency < 1:
            raise BuildError(f"--concurrency {self.concurrency}: expected 1 or more clients")
        if not pipelines:
            raise BuildError("--concurrency measures pipelines served with pages: build with "
                             "--pipeline (plain models keep --instances / --cpu-threads)")
        if options.device.kind != "cpu":
            raise BuildError(f"--concurrency chooses CPU layouts; --device {options.device} "
                             f"keeps --instances")
        if options.hosting == "native":
            raise BuildError("--concurrency sets the threads of Python-hosted engine models; "
                             "with --hosting native give --instances / --cpu-threads yourself")
        self.hostings = {"graph": ["graph"], "auto": ["graph", "python"]}.get(
            str(options.hosting), ["python"])
        self.plain_models = list(plain_models)
        from hpi_triton.errors import HpiTritonError
        from hpi_triton.server import find_tritonserver

        try:  # found now, not after every conversion
            find_tritonserver()
        except HpiTritonError as exc:
            raise BuildError(f"--concurrency serves the built repository to measure it: "
                             f"{exc}") from exc

    def apply(self, staging: Path, report) -> Dict:
        """Serve ``staging`` with each layout, keep the fastest; what was measured."""
        import cv2

        from hpi_triton import pages

        engines = [report.model_config(m.name) for m in report.models]
        graphs = [p.served_name for p in report.pipelines]
        encoded = [cv2.imencode(".png", p.image)[1].tobytes()
                   for p in pages.make_realistic_pages(self.pages, LAYOUT_SEED)]
        cores = usable_cores()
        tried = []
        # Engines in the graphs first: a layout that follows must beat the best so far by
        # MIN_GAIN, so ties keep the one with fewer processes (less memory) and fewer
        # instances (lower single-client latency).
        for hosting in self.hostings:
            for instances, threads in layouts(cores):
                if hosting == "graph":
                    ips = self._graph_throughput(staging, report, instances, threads, graphs,
                                                 encoded)
                else:
                    write_layout(staging, engines, instances, threads)
                    ips = served_throughput(staging, graphs, encoded, self.concurrency)
                tried.append({"hosting": hosting, "instances": instances,
                              "cpu_threads": threads, "img_s": round(ips, 2)})
                log.info("%s hosting, %d x %d threads at %d clients: %.2f img/s", hosting,
                         instances, threads, self.concurrency, ips)
        best = tried[0]
        for layout in tried[1:]:
            if layout["img_s"] >= best["img_s"] * MIN_GAIN:
                best = layout
        if best["hosting"] == "python":
            write_layout(staging, engines, best["instances"], best["cpu_threads"])
        return {"concurrency": self.concurrency, "cores": cores, "graphs": graphs,
                "pages": self.pages, "tried": tried,
                "chosen": {k: best[k] for k in ("hosting", "instances", "cpu_threads")}}

    def _graph_throughput(self, staging: Path, report, instances: int, threads: int,
                          graphs: List[str], encoded: List[bytes]) -> float:
        """img/s with the graphs running their engines (``instances`` graph instances x
        ``threads``), served from a copy of ``staging`` (the build's own stays as it is
        until the hosting transform, which runs after licensing)."""
        from hpi_triton.generator.graph_hosting import host_in_graphs

        with tempfile.TemporaryDirectory(prefix=".layout-", dir=staging.parent) as tmp:
            trial = Path(tmp) / staging.name
            shutil.copytree(staging, trial)
            host_in_graphs(trial, copy.deepcopy(report), instances, threads, self.plain_models)
            return served_throughput(trial, graphs, encoded, self.concurrency)


def write_layout(repo: Path, configs: Sequence[TritonModelConfig], instances: int,
                 threads: int) -> None:
    """Set ``instances`` × ``threads`` on the engine models of ``repo`` whose configs (the
    build's) are ``configs``, and write them (the server measuring it reads them there)."""
    for config in configs:
        config.instance_groups[0] = dataclasses.replace(config.instance_groups[0],
                                                        count=instances)
        config.parameters["cpu_threads"] = str(threads)
        config.write(repo / config.name)


def served_throughput(repo: Path, graphs: List[str], encoded: List[bytes],
                      concurrency: int) -> float:
    """img/s of ``graphs`` served from ``repo`` to ``concurrency`` clients (after a warm-up).

    Raises:
        BuildError: the server failed to start, or a page failed (its message).
    """
    from hpi_triton.client import Client
    from hpi_triton.errors import HpiTritonError
    from hpi_triton.server import TritonServer

    seconds = 0.0
    try:
        with TritonServer(repo, 0, 0, 0) as server, Client(server.grpc_url, "grpc") as client:
            for graph in graphs:
                for warm in (True, False):
                    started = time.perf_counter()
                    for result in client.predict_many(graph, encoded, concurrency=concurrency):
                        if result.error is not None:
                            raise BuildError(f"--concurrency: {graph} failed on a rendered "
                                             f"page: {result.error}")
                    if not warm:
                        seconds += time.perf_counter() - started
    except BuildError:
        raise
    except HpiTritonError as exc:
        raise BuildError(f"--concurrency: serving the staged repository failed: {exc}") from exc
    return len(graphs) * len(encoded) / seconds
