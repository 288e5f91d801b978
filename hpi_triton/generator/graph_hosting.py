"""``--hosting graph``: a pipeline graph runs its engines in its own process.

The build writes every engine as its own Python-backend model first (the transforms before
this one quantize, measure and encrypt them there); this last step moves the engines a BLS
graph calls into the graph's version dir (``engines/<model>``) and names them in the graph
config's ``hosted_engines``, so the graph loads them itself
(:func:`hpi_triton.python_backend.engines.hosted.graph_engines`) and calls them with no tensor
crossing a process boundary and no engine process of their own. Engines another model still
calls (a plain model, a vision ensemble) stay served as well.

On CPU this is what ``--hosting auto`` (the CLI's default) chooses, unless ``--concurrency``
measured separate engine models faster (:mod:`hpi_triton.transforms.layout`). GPU builds
keep separate engine models: Triton's dynamic batcher batches across requests only there.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hpi_triton.errors import BuildError
from hpi_triton.generator.plan import Hosting, RepositoryTransform
from hpi_triton.python_backend.engines.hosted import GRAPH_ENGINES_DIR

#: The graph config parameter naming the engines a graph runs itself.
HOSTED_ENGINES = "hosted_engines"


def hostable(report) -> Dict[str, List[str]]:
    """Graph served name → the engine models it calls that it can run itself: every BLS
    graph (a Python-backend model with ``pipeline_settings``) the build ``report`` wrote;
    vision ensembles call their engine as an ensemble step and keep it."""
    engine_names = {m.name for m in report.models}
    graphs = {}
    for pipeline in report.pipelines:
        graph = pipeline.configs.get(pipeline.served_name)
        if (pipeline.steps or graph is None or graph.backend != "python"
                or "pipeline_settings" not in graph.parameters):
            continue
        models = sorted({spec[0] for spec in pipeline.roles.values()} & engine_names)
        if models:
            graphs[pipeline.served_name] = models
    return graphs


def host_in_graphs(repo: Path, report, instances: Optional[int], threads: int,
                   keep_served: Sequence[str] = ()) -> Dict[str, List[str]]:
    """Move the engines of every hostable graph of ``repo`` into the graph, with
    ``threads`` threads each and ``instances`` graph instances (None: as written); the
    build's configs (``report``) edited and written. Engine models named in ``keep_served``
    (or called by a graph that keeps separate engines) stay served too. Returns graph →
    the engines it now runs."""
    graphs = hostable(report)
    hosted_anywhere = {m for models in graphs.values() for m in models}
    still_called = set(keep_served) | {
        spec[0] for p in report.pipelines if p.served_name not in graphs
        for spec in p.roles.values()} | {
        step for p in report.pipelines for step in p.steps}
    for graph_name, models in graphs.items():
        graph = report.model_config(graph_name)
        hosted = {}
        for model in models:
            config = report.model_config(model)
            shutil.copytree(repo / model / "1",
                            repo / graph_name / "1" / GRAPH_ENGINES_DIR / model)
            params = dict(config.parameters)
            params["cpu_threads"] = str(threads)
            hosted[model] = {"parameters": params,
                             "inputs": [t.name for t in config.inputs],
                             "outputs": [t.name for t in config.outputs]}
        graph.parameters[HOSTED_ENGINES] = json.dumps(hosted, sort_keys=True)
        if instances:
            graph.instance_groups[0] = dataclasses.replace(graph.instance_groups[0],
                                                           count=instances)
        graph.write(repo / graph_name)
    for model in report.models:
        if model.name in hosted_anywhere and model.name not in still_called:
            shutil.rmtree(repo / model.name)
            model.hosting = Hosting.GRAPH
    return graphs


class GraphHostingTransform(RepositoryTransform):
    """Run each BLS graph's engines in the graph's process (see the module docstring).

    Args:
        hosting: ``graph``, or ``auto`` (graph unless the layout measurement kept separate
            engine models).
        plain_models: Models the build serves on their own (they stay served).
        instances: Graph instances when no measurement chose: one (it measured fastest
            on 2 cores at 1 and 4 clients, default and ``--fast``, and one process holds
            half the memory of two; bench/RESULTS.md); None: as the graph was written.
        threads: Threads per engine (``--cpu-threads``, 0: every core) when none chose.
    """

    name = "hosting"

    def __init__(self, hosting: str, plain_models: Sequence[str] = (),
                 instances: Optional[int] = 1, threads: int = 0):
        self.hosting = hosting
        self.plain_models = list(plain_models)
        self.instances, self.threads = instances, threads

    def check(self, plain_models, pipelines, options) -> None:
        """Refuse ``--hosting graph`` for a GPU build.

        Raises:
            BuildError: naming the hosting GPU builds take.
        """
        if self.hosting == Hosting.GRAPH and options.device.kind != "cpu":
            raise BuildError(f"--hosting graph runs engines inside the graph's process on the "
                             f"CPU; --device {options.device} keeps separate engine models "
                             f"(--hosting python or auto), which Triton's dynamic batcher "
                             f"batches")

    def apply(self, staging: Path, report) -> Dict:
        """Host the engines in their graphs unless the layout measurement chose otherwise."""
        chosen = (report.transforms.get("layout") or {}).get("chosen") or {}
        hosting = chosen.get("hosting", Hosting.GRAPH)
        if self.hosting == Hosting.AUTO and hosting != Hosting.GRAPH:
            return {"hosting": Hosting.PYTHON, "why": "--concurrency measured separate engine "
                    "models faster", "graphs": {}}
        instances = chosen.get("instances", self.instances)
        threads = chosen.get("cpu_threads", self.threads)
        graphs = host_in_graphs(staging, report, instances, threads, self.plain_models)
        return {"hosting": Hosting.GRAPH, "graphs": graphs, "instances": instances,
                "cpu_threads": threads}
