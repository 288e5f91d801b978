"""The plan of a build and what it reports: requests, options, progress, reports, and the
repository transforms a build is handed. A leaf module: the pipelines, the CLI and licensing
build these objects; the build consumes them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from hpi_triton.choices import Choice
from hpi_triton.errors import BuildError
from hpi_triton.triton_models.backends.base import Device


class Hosting(Choice):
    """Where an engine runs inside tritonserver (``--hosting``)."""

    PYTHON = "python"  # every engine in a Python-backend model: any tritonserver serves it
    NATIVE = "native"  # Triton's own ONNX Runtime / OpenVINO / TensorRT backends
    # A pipeline graph's engines in the graph's own process (CPU builds; engines no graph
    # calls stay Python-backend models): no tensor crosses a process boundary.
    GRAPH = "graph"
    # CPU builds: graph or python as --concurrency measures them (graph without it); GPU
    # builds: python (Triton's dynamic batcher needs engine models).
    AUTO = "auto"


class DynamicBatchingMode(Choice):
    """Triton's dynamic batcher on engine models with max_batch_size > 1
    (``--dynamic-batching``): AUTO is on for GPU devices only."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class CandidateStatus(Choice):
    """What became of one candidate backend of a model."""

    VERIFIED = "verified"
    FAILED = "failed"  # converted, but conversion or verification failed
    UNAVAILABLE = "unavailable"  # not installed / no device here
    NOT_APPLICABLE = "not_applicable"  # cannot take this model (format, licence, ...)
    SKIPPED = "skipped"


class RepositoryTransform:
    """A change applied to the staged repository once every model and graph is written,
    before it is moved into place: handed to the build in :attr:`BuildOptions.transforms`,
    so the build imports none of them (licensing is one:
    :class:`hpi_triton.licensing.repository.LicenseTransform`)."""

    #: Its key in :attr:`BuildReport.transforms`.
    name = "transform"
    #: Backends a repository so transformed can serve (``None``: any).
    allowed_backends: Optional[Tuple[str, ...]] = None
    #: Python packages its served models then import besides the engines' (by name).
    requirements: Tuple[str, ...] = ()

    def check(self, plain_models: Sequence[str], pipelines: Sequence,
              options: BuildOptions) -> None:
        """Refuse (``BuildError``) a build this transform cannot apply to, before any work."""

    def prepare(self, requests: Sequence[ModelRequest], pipelines: Sequence) -> None:
        """Set :attr:`ModelRequest.preferred` on the models this transform needs on a
        particular backend (after :meth:`check`, before any model is built)."""

    def apply(self, staging: Path, report: BuildReport) -> List[dict]:
        """Transform ``staging``; what was done, for the report."""
        raise NotImplementedError


class BuildProgress:
    """Where the long steps of a build are announced; this default shows nothing.

    The CLI passes one that draws progress bars. ``step`` wraps one long step (a conversion
    with its verification, a TensorRT engine build, a latency measurement).
    """

    def start(self, models: List[str]) -> None:
        """The build begins; ``models`` will be built in this order."""

    @contextlib.contextmanager
    def step(self, model: str, what: str):
        """Wrap one long step of ``model``, named by ``what``; shows nothing here."""
        yield

    def model_done(self, model: str, backend: str) -> None:
        """``model`` is written with ``backend``."""

    def finish(self) -> None:
        """The build ended (written or failed)."""


@dataclass
class ModelRequest:
    """One ``--model NAME=DIR`` with its optional ``--backend NAME=BACKEND``.

    ``uint8_inputs`` (set by pipelines, by input position): inputs that a Python-hosted engine
    model takes as uint8 and turns into the engine's float32 as ``x * alpha - offset`` per
    channel (``[alpha per channel], [offset per channel]``), so a graph sends pixels instead of
    four times as many float bytes. Native hostings keep the engine's own input.
    ``uint8_outputs`` (by output position): integer outputs holding labels that a Python-hosted
    engine model serves as uint8 (a request whose labels leave 0..255 fails, naming the fix);
    float outputs and native hostings are left as the engine makes them."""

    name: str
    path: Path
    backend: Optional[str] = None
    uint8_inputs: Dict[int, Tuple[List[float], List[float]]] = field(default_factory=dict)
    uint8_outputs: Tuple[int, ...] = ()
    #: (backend, why) a transform needs when the user names none (``--backend`` still wins):
    #: tried first, before ``Hpi.selected_backends`` or a measurement, then the fallbacks.
    preferred: Optional[Tuple[str, str]] = None

    @property
    def backends(self) -> List[str]:
        """The backends ``--backend NAME=B1,B2`` asks for, in order (empty: none asked)."""
        return [b.strip() for b in (self.backend or "").split(",") if b.strip()]


@dataclass
class BuildOptions:
    """Settings of one build; defaults serve on the CPU with the Python-backend-only server."""

    out: Path
    device: Device = field(default_factory=Device)
    precision: str = "fp32"
    hosting: Hosting = Hosting.PYTHON
    cache_dir: Optional[Path] = None
    use_cache: bool = True
    cpu_threads: int = 0
    max_batch_size: Optional[int] = None
    instances: int = 1
    force: bool = False
    # Engine models with max_batch_size > 1: auto (on for GPU devices, off on CPU), on, off.
    dynamic_batching: DynamicBatchingMode = DynamicBatchingMode.AUTO
    # Applied to the staged repository in order (e.g. licensing: encrypted engines behind a
    # gate, hpi_triton.licensing.repository.LicenseTransform).
    transforms: List[RepositoryTransform] = field(default_factory=list)
    progress: BuildProgress = field(default_factory=BuildProgress, repr=False)


@dataclass
class CandidateReport:
    """How one candidate backend of a model fared.

    ``max_relative_error`` is against the reference engine, ``latency_ms`` the measured p50, and
    ``seconds`` the time its conversion and verification took (or its cache lookup).
    """

    backend: str
    status: CandidateStatus
    reason: str = ""
    max_relative_error: Optional[float] = None
    latency_ms: Optional[float] = None
    cache_hit: Optional[bool] = None
    seconds: float = 0.0


@dataclass
class ModelReport:
    """What the build did with one model: backend chosen and why, hosting, candidates tried."""

    name: str
    source: str
    model_name: str
    format: str
    backend: str = ""
    selection: str = ""
    hosting: str = ""
    #: The precision the engine runs at as served (``fp32``, ``bf16``, ``int8 + fp32``, ...):
    #: the build's, or what a transform (``--fast``'s gate) set.
    precision: str = ""
    max_batch_size: int = 0
    candidates: List[CandidateReport] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    #: The model config the build emitted (a ``TritonModelConfig``), so pipelines read the
    #: engine's tensors from it instead of the config.pbtxt just written; not in the JSON.
    config: Optional[object] = field(default=None, repr=False, compare=False)

    def warn(self, message: str, handled: bool = False) -> None:
        """Note a fallback or a hosting change in the report and the build log; ``handled``:
        an expected fallback the build dealt with (the terminal shows it as a note)."""
        self.warnings.append(message)
        logging.getLogger("hpi_triton.build").warning(message, extra={"handled": handled})


@dataclass
class PipelineReport:
    """What one pipeline wrote (an entry of build_report.json's ``pipelines``): its kind, the
    graph's served name, the engine call of each role and the graph's defaults, and what some
    pipelines add."""

    pipeline: str
    served_name: str
    roles: Dict[str, list]
    params: dict
    #: A vision ensemble's steps: pre-processing, engine, post-processing models.
    steps: List[str] = field(default_factory=list)
    #: The model that calls the licence gate (default: the graph).
    license_check: Optional[str] = None
    #: The OCR's recognition / text-line orientation batch sizes as served.
    text_rec_batch_size: Optional[int] = None
    textline_orientation_batch_size: Optional[int] = None
    #: Pipeline YAML keys accepted but not applied by the served graph.
    not_applied: Dict[str, object] = field(default_factory=dict)
    #: Sentences REPORT.md says of this graph.
    notes: List[str] = field(default_factory=list)
    #: The configs (``TritonModelConfig``) of the models this pipeline wrote (its graph, a
    #: vision ensemble and its steps), by model name, kept by the build so transforms edit
    #: them instead of the config.pbtxt just written; not in the JSON.
    configs: Dict[str, object] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The JSON entry: fields left unset are left out."""
        entry = asdict(self)
        entry.pop("configs")
        return {k: v for k, v in entry.items() if v not in (None, [], {})
                or k in ("roles", "params")}

    @classmethod
    def from_dict(cls, entry: dict) -> PipelineReport:
        """An entry of a build_report.json (one written before ``served_name`` existed is
        served under its pipeline's name); keys it does not know are ignored."""
        known = {k: v for k, v in entry.items() if k in cls.__dataclass_fields__}
        known.setdefault("served_name", None)
        known["served_name"] = known["served_name"] or entry["pipeline"]
        known.setdefault("roles", {})
        known.setdefault("params", {})
        return cls(**known)


@dataclass
class BuildReport:
    """What one build wrote: its settings, the models, pipelines and transforms, and versions."""

    out: str
    device: str
    precision: str
    hosting: str
    models: List[ModelReport] = field(default_factory=list)
    pipelines: List[PipelineReport] = field(default_factory=list)
    transforms: Dict[str, List[dict]] = field(default_factory=dict)
    requirements: List[str] = field(default_factory=list)
    seconds: float = 0.0
    versions: Dict[str, Optional[str]] = field(default_factory=dict)

    def model_config(self, name: str):
        """The config (``TritonModelConfig``) the build wrote for model ``name``, an engine
        model or one a pipeline wrote: what a transform edits and writes again.

        Raises:
            BuildError: the build wrote no model ``name``.
        """
        for model in self.models:
            if model.name == name and model.config is not None:
                return model.config
        for pipeline in self.pipelines:
            if name in pipeline.configs:
                return pipeline.configs[name]
        written = [m.name for m in self.models if m.config is not None] + [
            n for p in self.pipelines for n in p.configs]
        raise BuildError(f"the build wrote no model {name!r}; it wrote {sorted(written)}")

    @property
    def licensing(self) -> List[dict]:
        """What licensing did per pipeline (empty for an unlicensed repository)."""
        return self.transforms.get("license", [])

    def to_dict(self) -> dict:
        """Return the report as a JSON-ready dict, nested reports included."""
        out = asdict(self)
        out["pipelines"] = [p.to_dict() for p in self.pipelines]
        for model in out["models"]:
            model.pop("config", None)
        return out
