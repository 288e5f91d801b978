"""One engine artifact loaded in this process the way the server runs it: the one adapter for
where an engine runs inside tritonserver.

An engine model (``models/engine.py``) serves one of these to every graph over BLS; with
``--hosting graph`` a pipeline graph holds its own (:func:`engine_factory`) and calls it in its
process, with no tensor crossing a process boundary. Either way the same code decides how the
artifact loads (decrypted in memory in a licensed repository), how uint8 pixels become the
engine's float32, and how the memory a huge input grew goes back. Imports nothing outside the
runtime package.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ..common import stub_runtime
from ..common.engine import tensor_names
from . import create_runner, instance_core

#: The folder of a graph's version dir that holds the engines it runs itself, one folder per
#: engine model name (the engine model's version dir, moved there by the build).
GRAPH_ENGINES_DIR = "engines"


class EngineLocked(RuntimeError):
    """A licensed engine whose certificate is missing or invalid here: not loaded yet."""


class HostedEngine:
    """An engine artifact loaded here, called with its served tensor names.

    Args:
        version_dir: The folder holding the artifact (an engine model's version dir).
        parameters: The engine model's config ``parameters`` (engine, precision, cpu_threads,
            ``uint8_inputs``, ``release_memory_above_mb``, ``reload_engine_above_mb``, ...).
        inputs: The served input names, in the engine's input order.
        outputs: The served output names, in the engine's output order.
        name: The engine model's name, for messages.
        warn: Where warnings go (``pb_utils.Logger.log_warn`` inside tritonserver).
    """

    def __init__(self, version_dir: str, parameters: Dict[str, str], inputs: Sequence[str],
                 outputs: Sequence[str], name: str = "engine",
                 warn: Callable[[str], None] = print):
        params = dict(parameters)
        self.version_dir, self.name, self.warn = version_dir, name, warn
        self.inputs, self.outputs = list(inputs), list(outputs)
        # Inputs sent as uint8 pixels (CHW): float32 x * alpha - offset per channel here, the
        # arithmetic of image_io.scale_chw (not imported: it needs OpenCV, which an engine's
        # environment may lack), applied once per engine call.
        self.scaled_inputs = {
            input_name: (np.asarray(alpha, np.float32)[:, None, None],
                         np.asarray(offset, np.float32)[:, None, None])
            for input_name, (alpha, offset) in json.loads(params.pop("uint8_inputs",
                                                                     "{}")).items()}
        # An engine call with more input bytes than this hands the working memory it grew
        # back afterwards (OpenVINO / Paddle / ONNX Runtime keep the peak of every shape run).
        self.release_above = float(params.pop(
            "release_memory_above_mb", stub_runtime.DEFAULT_RELEASE_ABOVE_MB)) * (1 << 20)
        # Above this, releasing is not enough (OpenVINO kept ~350 MB more for later ordinary
        # shapes after a 4000x4000 detection input): the engine is loaded afresh after the
        # call, which measured 0.55 s once against ~10 s for such a request.
        self.reload_above = float(params.pop(
            "reload_engine_above_mb", stub_runtime.DEFAULT_RELOAD_ABOVE_MB)) * (1 << 20)
        self.params = params
        self.runner, self.license = None, None
        if os.path.isfile(os.path.join(version_dir, "license.json")):
            # A licensed repository: the artifact is encrypted; it is decrypted in memory
            # once a valid certificate for this device is present (checked again on each
            # call until then), and never written out.
            from ..licensing import license_runtime

            self.license = license_runtime.LicenseCheck(version_dir)
            try:
                self._load(self.license.unlock())
            except license_runtime.LicenseError as exc:
                warn(f"{name}: engine not loaded yet ({exc}); each request checks the "
                     f"certificate again")
        else:
            self._load(None)

    def _load(self, files: Optional[Dict[str, bytes]]) -> None:
        self.runner = create_runner(self.version_dir, self.params, files)
        # The engine's own tensor names can differ from the served ones (e.g. after a
        # conversion renamed them); they map by position, as the build verified.
        self.engine_inputs = dict(zip(self.inputs, self.runner.input_names))
        self.engine_outputs = list(zip(self.outputs, self.runner.output_names))

    def ensure_loaded(self) -> None:
        """Unlock a licensed engine still locked.

        Raises:
            EngineLocked: no valid certificate yet (the reason).
        """
        if self.runner is not None:
            return
        try:
            self._load(self.license.unlock())
        except Exception as exc:
            raise EngineLocked(f"{self.name}: {exc}") from None

    def _reload(self) -> None:
        """A fresh engine in place of this one, whose buffers grew to a huge input."""
        old = self.runner
        try:
            self._load(self.license.unlock() if self.license is not None else None)
        except Exception as exc:  # keep serving with the old engine, its buffers released
            self.warn(f"{self.name}: loading the engine afresh after a large request failed "
                      f"({type(exc).__name__}: {exc}); serving on with the loaded engine, "
                      f"its buffers released")
            self.runner = old
            old.release_memory()
            return
        del old
        stub_runtime.release_heap()

    def scaled(self, name: str, array: np.ndarray) -> np.ndarray:
        """Input ``name`` as the engine takes it: uint8 pixels scaled to float32."""
        if name not in self.scaled_inputs:
            return array
        alpha, offset = self.scaled_inputs[name]
        out = array.astype(np.float32)
        out *= alpha
        out -= offset
        return out

    def infer(self, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """One engine call on the served inputs ``arrays``; every served output by name."""
        self.ensure_loaded()
        feed = {self.engine_inputs[name]: self.scaled(name, value)
                for name, value in arrays.items()}
        size = sum(a.nbytes for a in feed.values())
        if size > self.reload_above:
            result = self.runner.run(feed)
            self._reload()
        elif size > self.release_above:
            result = self.runner.run_and_release(feed)
        else:
            result = self.runner.run(feed)
        return {served: result[engine] for served, engine in self.engine_outputs}


class GraphEngine:
    """A :class:`HostedEngine` as a flow calls it (``run(*arrays) -> list``), with the
    inputs and outputs one engine-call spec of the graph names."""

    def __init__(self, engine: HostedEngine, inputs: Sequence[str], outputs: Sequence[str]):
        self.engine = engine
        self.input_names = tensor_names(inputs)
        self.output_names = tensor_names(outputs)

    def run(self, *arrays: np.ndarray) -> List[np.ndarray]:
        """The engine on ``arrays`` (in ``input_names`` order); outputs in order."""
        result = self.engine.infer(dict(zip(self.input_names, arrays)))
        return [result[name] for name in self.output_names]


def graph_engines(version_dir: str, hosted: Dict[str, Dict], warn: Callable[[str], None]
                  ) -> Callable[[list], Optional[GraphEngine]]:
    """``spec -> engine`` for the engines a graph runs itself, or None for a spec naming an
    engine it calls over BLS.

    Args:
        version_dir: The graph's version dir (its engines are in :data:`GRAPH_ENGINES_DIR`).
        hosted: The graph config's ``hosted_engines``: engine model name → ``{parameters,
            inputs, outputs}``, as the engine model's config had them.
        warn: Where warnings go.
    """
    loaded: Dict[str, HostedEngine] = {}

    def engine(spec: list) -> Optional[GraphEngine]:
        model, inputs, outputs = spec
        if model not in hosted:
            return None
        if model not in loaded:  # roles sharing a model share one engine
            entry = hosted[model]
            loaded[model] = HostedEngine(
                os.path.join(version_dir, GRAPH_ENGINES_DIR, model), entry["parameters"],
                entry["inputs"], entry["outputs"], model, warn)
        return GraphEngine(loaded[model], inputs, outputs)

    return engine


def engine_factory(args):
    """``spec -> engine`` for a graph model's engine-call specs ``[model, inputs, outputs]``
    inside tritonserver (``args``: its ``initialize`` arguments): the engines the graph runs
    in its own process (``--hosting graph``: its config's ``hosted_engines``, their artifacts
    in the version dir's ``engines/``), a BLS call to the served engine model for any other."""
    import triton_python_backend_utils as pb_utils

    from ..common.bls import EngineCall

    config = json.loads(args["model_config"])
    hosted = json.loads(config.get("parameters", {}).get("hosted_engines", {})
                        .get("string_value", "{}"))
    if not hosted:
        return lambda spec: EngineCall(*spec)
    for entry in hosted.values():
        # Several graph instances share the cores: OpenVINO's default pinning would bind
        # each one's threads to the same first cores (see models/engine.py).
        entry["parameters"].setdefault("cpu_pinning", "false")
    threads = {entry["parameters"].get("cpu_threads") for entry in hosted.values()}
    # Single-thread instances, one per core, each keep to their core, as engine models do.
    core = instance_core(
        {"cpu_threads": threads.pop() if len(threads) == 1 else ""},
        sum(int(g.get("count", 1)) for g in config.get("instance_group") or [{}]),
        args.get("model_instance_name", ""), sorted(os.sched_getaffinity(0)))
    if core is not None:  # before the engines start their threads: they inherit it
        os.sched_setaffinity(0, {core})
    version_dir = os.path.join(args["model_repository"], args["model_version"])
    local = graph_engines(version_dir, hosted, pb_utils.Logger.log_warn)
    return lambda spec: local(spec) or EngineCall(*spec)
