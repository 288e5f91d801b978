"""``hpi-triton build``: PaddleX model dirs → a verified Triton model repository.

For each model: parse the dir, order the candidate backends (``--backend`` >
``Hpi.selected_backends[device]`` > measured), convert and verify (cached), fall back with a
warning when a candidate fails, and write the Triton model. The repository is written into a
temp dir beside ``--out`` and renamed into place only when every model succeeded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from hpi_triton.errors import (
    BackendUnavailableError,
    BuildError,
    ConversionError,
    InferenceConfigError,
    NoUsableBackendError,
    UnknownBackendError,
    VerificationError,
)
from hpi_triton.generator import samples as sample_inputs
from hpi_triton.generator.cache import (
    ArtifactCache,
    cache_key,
    device_architecture,
    package_versions,
)
from hpi_triton.generator.model_dir import ModelSource, load_model_dir
from hpi_triton.generator.plan import (  # noqa: F401  (re-exported: the build's interface)
    BuildOptions,
    BuildProgress,
    BuildReport,
    CandidateReport,
    CandidateStatus,
    DynamicBatchingMode,
    Hosting,
    ModelReport,
    ModelRequest,
    RepositoryTransform,
)
from hpi_triton.generator.verify import (
    TOLERANCES,
    Reference,
    compute_reference,
    measure_latency,
)
from hpi_triton.python_backend import EntryPoint, engines, ship
from hpi_triton.triton_models.backends import Backend, ConvertContext, registry
from hpi_triton.triton_models.config import (
    DynamicBatching,
    InstanceGroup,
    TensorConfig,
    TritonModelConfig,
    WarmupSample,
)

log = logging.getLogger("hpi_triton.build")

HOSTINGS = tuple(Hosting)
# --dynamic-batching: auto batches engine models on GPUs only. On CPU a batched call costs
# what its requests cost one by one (OpenVINO 1 thread: 1.76-1.84 ms per image at batch 1-8),
# and the batcher's extra hand-off per request measured -3% to -7% img/s on the vision
# ensembles (bench/RESULTS.md, session 8).
DYNAMIC_BATCHING = tuple(DynamicBatchingMode)
# Fallback order when the first choice fails, fastest-first as usually seen on each device.
FALLBACK_ORDER = {
    "cpu": ("openvino", "onnx_runtime", "paddle_infer"),
    "gpu": ("tensorrt", "paddle_tensorrt", "onnx_runtime", "paddle_infer", "openvino"),
}
DEFAULT_MAX_BATCH_SIZE = 8


def build_repository(requests: List[ModelRequest], options: BuildOptions,
                     pipelines: Sequence = ()) -> BuildReport:
    """Build the repository at ``options.out``; see the module docstring.

    ``pipelines`` (from :mod:`hpi_triton.ensembles`) add their role models to ``requests``
    and, once those are built, write their orchestration models.

    Raises:
        HpiTritonError: a model dir is broken, a backend name is unknown, or no backend
            converted and verified for some model. Nothing is left at ``options.out`` then.
    """
    started = time.perf_counter()
    plain_models = [r.name for r in requests]
    requests = list(requests) + [r for p in pipelines for r in p.model_requests()]
    _check_options(requests, options)
    graphs = [name for p in pipelines for name in p.graph_models]
    clashes = sorted({g for g in graphs if graphs.count(g) > 1 or g in
                      {r.name for r in requests}})
    if clashes:
        raise BuildError(f"pipeline graph names must be unique in a repository; repeated: "
                         f"{clashes} (give each pipeline its own --name)")
    for transform in options.transforms:
        transform.check(plain_models, pipelines, options)
    out = Path(options.out).expanduser().resolve()
    if out.exists() and not options.force:
        raise BuildError(f"--out {out} already exists; pass --force to replace it or choose "
                         f"another path")
    sources = {r.name: load_model_dir(r.path) for r in requests}
    cache = ArtifactCache(options.cache_dir, enabled=options.use_cache)
    report = BuildReport(out=str(out), device=str(options.device), precision=options.precision,
                         hosting=options.hosting,
                         versions=package_versions(_all_packages()))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    progress = options.progress
    progress.start([r.name for r in requests])
    try:
        for request in requests:
            builder = _ModelBuilder(request, sources[request.name], options, cache)
            report.models.append(builder.build(staging))
            progress.model_done(request.name, report.models[-1].backend)
        by_name = {m.name: m for m in report.models}
        for pipeline in pipelines:
            with progress.step(pipeline.served_name, "write the pipeline graph"):
                report.pipelines.append(pipeline.write(staging, sources, by_name))
        for transform in options.transforms:
            with progress.step(transform.name, f"apply {transform.name}"):
                report.transforms[transform.name] = transform.apply(staging, report)
        from hpi_triton.generator.requirements import (
            REQUIREMENTS_TXT,
            requirements_text,
            serving_requirements,
        )

        report.requirements = serving_requirements(
            options.device.kind, [m.backend for m in report.models if m.hosting == Hosting.PYTHON],
            [p["pipeline"] for p in report.pipelines],
            [name for t in options.transforms for name in t.requirements])
        (staging / REQUIREMENTS_TXT).write_text(requirements_text(report.requirements))
        report.seconds = round(time.perf_counter() - started, 2)
        from hpi_triton.generator.report import write_report

        write_report(report, staging)
        _move_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        progress.finish()
    return report


def _check_options(requests: List[ModelRequest], options: BuildOptions) -> None:
    if not requests:
        raise BuildError("no models given; pass --model NAME=DIR at least once (or "
                         "--pipeline NAME with --model ROLE=DIR)")
    names = [r.name for r in requests]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise BuildError(f"--model names must be unique; repeated: {duplicates}")
    for name in names:
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
            raise BuildError(f"--model name {name!r}: use letters, digits, '-', '_' or '.'")
    if options.hosting not in HOSTINGS:
        raise BuildError(f"--hosting {options.hosting!r}; expected one of "
                         f"{tuple(str(h) for h in HOSTINGS)}")
    if options.precision not in TOLERANCES:
        raise BuildError(f"--precision {options.precision!r}; expected one of "
                         f"{sorted(TOLERANCES)}")
    if options.instances < 1:
        raise BuildError(f"--instances {options.instances}; expected 1 or more")
    if options.dynamic_batching not in DYNAMIC_BATCHING:
        raise BuildError(f"--dynamic-batching {options.dynamic_batching!r}; expected one of "
                         f"{tuple(str(d) for d in DYNAMIC_BATCHING)}")
    for request in requests:
        if request.backend:
            try:  # an unknown name raises here, listing the valid ones
                registry.canonical(request.backend)
            except BackendUnavailableError:
                pass  # known but not installed: the build falls back with a warning


def _all_packages() -> List[str]:
    return ["paddlepaddle", "paddle2onnx", "onnxruntime", "openvino", "tensorrt",
            "tritonclient", "nvidia-pytriton"]


def _move_into_place(staging: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.rename(out, old)
        os.rename(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out)


@cache
def _engines_digest() -> str:
    return hashlib.sha256(Path(engines.__file__).read_bytes()).hexdigest()[:16]


class _ModelBuilder:
    """Builds one model: candidates, conversion, verification, selection, emission."""

    def __init__(self, request: ModelRequest, source: ModelSource, options: BuildOptions,
                 cache: ArtifactCache):
        self.request = request
        self.source = source
        self.options = options
        self.cache = cache
        self.max_batch_size = self._max_batch_size()
        self.ctx = ConvertContext(device=options.device, precision=options.precision,
                                  cache=cache, max_batch_size=self.max_batch_size,
                                  cpu_threads=options.cpu_threads)
        self.sample_shapes = sample_inputs.sample_shapes(source, self.max_batch_size)
        self._reference: Optional[Reference] = None
        self.report = ModelReport(name=request.name, source=str(source.path),
                                  model_name=source.model_name, format=source.format,
                                  max_batch_size=self.max_batch_size)

    def _max_batch_size(self) -> int:
        if not self.source.batched:
            return 0
        if self.options.max_batch_size:
            return self.options.max_batch_size
        if self.source.dynamic_shapes:
            return max(1, min(r[2][0] for r in self.source.dynamic_shapes.values()))
        return DEFAULT_MAX_BATCH_SIZE

    @property
    def reference(self) -> Reference:
        if self._reference is None:
            feeds = [sample_inputs.make_inputs(self.source, shapes, seed=i)
                     for i, shapes in enumerate(self.sample_shapes)]
            self._reference = compute_reference(self.source, feeds, self.options.cpu_threads)
        return self._reference

    # -- selection --------------------------------------------------------------------------

    def _resolve(self, name: str, origin: str) -> Optional[str]:
        """Canonical backend name; unknown names are errors, missing packages a fallback."""
        try:
            return registry.canonical(name)
        except BackendUnavailableError as exc:
            self._warn(f"{origin} asks for {name!r}, but {exc}; falling back")
            self.report.candidates.append(
                CandidateReport(name, CandidateStatus.UNAVAILABLE, str(exc)))
            return None
        except UnknownBackendError as exc:
            if origin.startswith("Hpi"):
                raise InferenceConfigError(f"{self.source.path / 'inference.yml'}: field "
                                           f"'{origin}': {exc}") from exc
            raise

    def _order(self):
        device = self.options.device.kind
        fallbacks = [b for b in FALLBACK_ORDER[device] if b in registry.names()]
        if self.request.backend:
            origin = f"--backend {self.request.name}={self.request.backend}"
            first = self._resolve(self.request.backend, origin)
        elif self.source.selected_backends.get(device):
            origin = f"Hpi.selected_backends.{device}"
            first = self._resolve(self.source.selected_backends[device], origin)
        else:
            return None, "measured", None
        order = ([first] if first else []) + [b for b in fallbacks if b != first]
        return order, origin, first

    def build(self, repo: Path) -> ModelReport:
        order, origin, requested = self._order()
        if order is None:
            chosen, why = self._select_measured()
        else:
            chosen, why = self._select_first_working(order, origin, requested)
        backend, entry_dir, meta = chosen
        chosen_report = next(c for c in reversed(self.report.candidates)
                             if c.backend == backend.name)
        if chosen_report.latency_ms is None:
            # For the report's chart: what the chosen engine costs at batch 1 (cached).
            chosen_report.latency_ms = self._measure(backend, entry_dir, meta)
        self.report.backend = backend.name
        self.report.selection = why
        self._emit(repo, backend, entry_dir, meta)
        log.info("%s: %s (%s)", self.request.name, backend.name, why)
        return self.report

    def _usable(self, backend: Backend) -> Optional[CandidateReport]:
        for transform in self.options.transforms:
            allowed = transform.allowed_backends
            if allowed is not None and backend.name not in allowed:
                return CandidateReport(backend.name, CandidateStatus.NOT_APPLICABLE,
                                       f"a repository with {transform.name} serves "
                                       f"{', '.join(allowed)} only")
        reason = backend.not_applicable_reason(self.source)
        if reason:
            return CandidateReport(backend.name, CandidateStatus.NOT_APPLICABLE, reason)
        reason = backend.unavailable_reason(self.options.device, self.options.precision)
        if reason:
            return CandidateReport(backend.name, CandidateStatus.UNAVAILABLE, reason)
        return None

    def _select_first_working(self, order: List[str], origin: str, requested: Optional[str]):
        for name in order:
            backend = registry.get(name)
            skipped = self._usable(backend)
            if skipped:
                self.report.candidates.append(skipped)
                if name == requested:
                    self._warn(f"{origin} asks for {name}, but {skipped.reason}; falling back")
                continue
            candidate, entry = self._artifact(backend)
            self.report.candidates.append(candidate)
            if entry is not None:
                failed = [c.backend for c in self.report.candidates
                          if c.status != CandidateStatus.VERIFIED]
                why = origin if name == requested else (
                    f"fallback for {origin} after {', '.join(failed)} could not be used")
                return (backend, entry[0], entry[1]), why
            self._warn(f"{name} failed for model {self.request.name!r}: {candidate.reason}; "
                       f"trying the next backend")
        raise NoUsableBackendError(self._no_backend_message())

    def _select_measured(self):
        verified = []
        for name in registry.names():
            backend = registry.get(name)
            skipped = self._usable(backend)
            if skipped:
                self.report.candidates.append(skipped)
                continue
            candidate, entry = self._artifact(backend)
            self.report.candidates.append(candidate)
            if entry is None:
                self._warn(f"{name} failed for model {self.request.name!r}: {candidate.reason}")
                continue
            candidate.latency_ms = self._measure(backend, entry[0], entry[1])
            verified.append((candidate.latency_ms, backend, entry))
        if not verified:
            raise NoUsableBackendError(self._no_backend_message())
        verified.sort(key=lambda item: item[0])
        timings = ", ".join(f"{b.name} {ms:.2f} ms" for ms, b, _ in verified)
        _, backend, entry = verified[0]
        return (backend, entry[0], entry[1]), f"measured fastest at batch 1: {timings}"

    def _no_backend_message(self) -> str:
        lines = [f"  {c.backend}: {c.status}: {c.reason}" for c in self.report.candidates]
        return (f"model {self.request.name!r} ({self.source.path}): no backend converted and "
                f"verified on {self.options.device}:\n" + "\n".join(lines))

    def _warn(self, message: str) -> None:
        self.report.warnings.append(message)
        log.warning(message)

    # -- artifacts --------------------------------------------------------------------------

    def _runtime_params(self, params: Dict[str, str]) -> Dict[str, str]:
        runtime = dict(params)
        runtime["device"] = self.options.device.kind
        runtime["device_id"] = str(self.options.device.index)
        runtime["cpu_threads"] = str(self.options.cpu_threads)
        return runtime

    def _artifact(self, backend: Backend):
        """Convert + verify (cached). Returns the candidate report and (dir, meta) or None."""
        started = time.perf_counter()
        key = cache_key(
            kind="artifact", backend=backend.name, model=self.source.content_hash(),
            precision=self.options.precision, device=self.options.device.kind,
            arch=device_architecture(self.options.device.kind),
            versions=package_versions(backend.packages), shapes=self.sample_shapes,
            max_batch_size=self.max_batch_size, tolerance=TOLERANCES[self.options.precision],
            engines=_engines_digest(),
        )

        def create(out_dir: Path) -> dict:
            params = backend.convert(self.source, self.ctx, out_dir)
            reference = self.reference
            result = backend.verify(out_dir, self._runtime_params(params), reference,
                                    TOLERANCES[self.options.precision])
            return {
                "backend": backend.name, "params": params,
                "max_relative_error": result.max_relative_error,
                "reference": result.reference, "samples": result.samples,
                "engine_inputs": result.engine_inputs, "engine_outputs": result.engine_outputs,
                "output_shapes": [[list(o.shape) for o in outs] for outs in reference.outputs],
                "files": sorted(p.name for p in out_dir.iterdir()),
            }

        try:
            with self.options.progress.step(self.request.name,
                                            f"{backend.name}: convert + verify"):
                entry = self.cache.get_or_create(key, create)
        except (ConversionError, VerificationError) as exc:
            return CandidateReport(backend.name, CandidateStatus.FAILED, str(exc),
                                   seconds=round(time.perf_counter() - started, 2)), None
        candidate = CandidateReport(backend.name, CandidateStatus.VERIFIED,
                                    max_relative_error=entry.meta["max_relative_error"],
                                    cache_hit=entry.hit,
                                    seconds=round(time.perf_counter() - started, 2))
        return candidate, (entry.directory, entry.meta)

    def _measure(self, backend: Backend, entry_dir: Path, meta: dict) -> float:
        shapes = sample_inputs.opt_shapes(self.source, self.max_batch_size)
        key = cache_key(kind="latency", artifact=str(entry_dir.name), shapes=shapes,
                        threads=self.options.cpu_threads, device=str(self.options.device))
        path = self.cache.measurement_path(key)
        cached = self.cache.read_json(path)
        if cached:
            return cached["p50_ms"]
        with self.options.progress.step(self.request.name, f"{backend.name}: measure latency"):
            runner = engines.create_runner(entry_dir, self._runtime_params(meta["params"]))
            timing = measure_latency(runner, sample_inputs.make_inputs(self.source, shapes))
        self.cache.write_json(path, timing)
        return timing["p50_ms"]

    # -- emission ---------------------------------------------------------------------------

    def _tensor_configs(self, meta: dict, engine_names: bool):
        batched = self.max_batch_size > 0
        observed = meta.get("output_shapes") or []

        def dims(shape, position: int, is_output: bool):
            dims = list(shape)
            if is_output:
                for sample in observed:
                    if position < len(sample) and len(sample[position]) == len(dims):
                        dims = [d if d == s else -1 for d, s in zip(dims, sample[position])]
            return dims[1:] if batched else dims

        in_names = meta["engine_inputs"] if engine_names else [t.name for t in self.source.inputs]
        out_names = (meta["engine_outputs"] if engine_names
                     else [t.name for t in self.source.outputs])
        inputs = [TensorConfig(n, t.dtype, dims(t.shape, i, False))
                  for i, (n, t) in enumerate(zip(in_names, self.source.inputs))]
        outputs = [TensorConfig(n, t.dtype, dims(t.shape, i, True))
                   for i, (n, t) in enumerate(zip(out_names, self.source.outputs))]
        return inputs, outputs

    def _emit(self, repo: Path, backend: Backend, entry_dir: Path, meta: dict) -> None:
        model_dir = repo / self.request.name
        version_dir = model_dir / "1"
        version_dir.mkdir(parents=True)
        for name in meta["files"]:
            _link_or_copy(entry_dir / name, version_dir / name)
        native = (backend.native_entry(meta["params"], self.ctx)
                  if self.options.hosting == Hosting.NATIVE else None)
        if self.options.hosting == Hosting.NATIVE and native is None:
            self._warn(f"{backend.name} has no native Triton hosting for this model on "
                       f"{self.options.device} at {self.options.precision}; it is served by a "
                       f"Python-backend model")
        if native is None:
            self.report.hosting = Hosting.PYTHON
            ship(version_dir, EntryPoint.ENGINE)
            parameters = self._runtime_params(meta["params"])
            parameters.pop("device", None)
            parameters.pop("device_id", None)
            config_fields = {"backend": "python", "parameters": parameters}
            inputs, outputs = self._tensor_configs(meta, engine_names=False)
            scaled = {}
            for position, (alpha, offset) in sorted(self.request.uint8_inputs.items()):
                tensor = inputs[position]
                if tensor.dtype != "float32":
                    raise BuildError(f"model {self.request.name!r}: input {tensor.name!r} is "
                                     f"{tensor.dtype}; uint8 pixels scale only into float32")
                inputs[position] = TensorConfig(tensor.name, "uint8", tensor.dims)
                scaled[tensor.name] = [list(alpha), list(offset)]
            if scaled:
                parameters["uint8_inputs"] = json.dumps(scaled)
            narrowed = []
            for position in sorted(self.request.uint8_outputs):
                tensor = outputs[position] if position < len(outputs) else None
                if tensor is not None and tensor.dtype in ("int32", "int64"):
                    outputs[position] = TensorConfig(tensor.name, "uint8", tensor.dims)
                    narrowed.append(tensor.name)
            if narrowed:
                parameters["uint8_outputs"] = json.dumps(narrowed)
        else:
            self.report.hosting = native.platform or native.backend
            config_fields = {"platform": native.platform, "backend": native.backend,
                             "parameters": native.parameters,
                             "default_model_filename": native.default_model_filename}
            inputs, outputs = self._tensor_configs(meta, engine_names=True)
        device = self.options.device
        opt = sample_inputs.opt_shapes(self.source, self.max_batch_size)
        warm_dims = {n: list(s[1:] if self.max_batch_size else s) for n, s in opt.items()}
        warm_names = dict(zip([t.name for t in self.source.inputs], [t.name for t in inputs]))
        config = TritonModelConfig(
            name=self.request.name, inputs=inputs, outputs=outputs,
            max_batch_size=self.max_batch_size,
            instance_groups=[InstanceGroup(kind=device.kind, count=self.options.instances,
                                           gpus=[device.index] if device.kind == "gpu" else [])],
            dynamic_batching=DynamicBatching() if dynamic_batching_enabled(
                self.options.dynamic_batching, device.kind, self.max_batch_size) else None,
            warmup=[WarmupSample("opt_shape", 1,
                                 {warm_names[n]: d for n, d in warm_dims.items()})],
            **config_fields,
        )
        config.write(model_dir)


def dynamic_batching_enabled(choice: str, device_kind: str, max_batch_size: int) -> bool:
    """Whether an engine model gets Triton's dynamic batcher (``--dynamic-batching``)."""
    if max_batch_size <= 1 or choice == DynamicBatchingMode.OFF:
        return False
    return choice == DynamicBatchingMode.ON or device_kind == "gpu"


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link cache files into the repository (same filesystem), else copy them."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
