"""``hpi-triton build``: PaddleX model dirs → a verified Triton model repository.

For each model, three stages: :mod:`.selection` orders the candidate backends (``--backend``
> ``Hpi.selected_backends[device]`` > measured) and falls back with a warning when one fails;
:mod:`.artifacts` converts and verifies each candidate against Paddle Inference (cached) and
measures it; :mod:`.emit` writes the Triton model. Then the pipelines write their graphs and
the transforms (licensing) change the staged repository. It is written into a temp dir beside
``--out`` and renamed into place only when everything succeeded.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import List, Sequence

from hpi_triton.core.cache import ArtifactCache, package_versions
from hpi_triton.core.model_dir import ModelSource, load_model_dir
from hpi_triton.core.verify import TOLERANCES
from hpi_triton.errors import BackendUnavailableError, BuildError
from hpi_triton.generator.artifacts import ModelArtifacts
from hpi_triton.generator.emit import dynamic_batching_enabled, emit_engine_model  # noqa: F401
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
from hpi_triton.generator.selection import BackendSelection
from hpi_triton.logs import BuildLog, quiet_engine_imports
from hpi_triton.triton_models.backends import registry
from hpi_triton.triton_models.config import recording_writes

log = logging.getLogger("hpi_triton.build")
quiet_engine_imports()

HOSTINGS = tuple(Hosting)
# --dynamic-batching: auto batches engine models on GPUs only. On CPU a batched call costs
# what its requests cost one by one (OpenVINO 1 thread: 1.76-1.84 ms per image at batch 1-8),
# and the batcher's extra hand-off per request measured -3% to -7% img/s on the vision
# ensembles (bench/RESULTS.md, session 8).
DYNAMIC_BATCHING = tuple(DynamicBatchingMode)


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
    transforms = list(options.transforms)
    if pipelines and (options.hosting == Hosting.GRAPH or (
            options.hosting == Hosting.AUTO and options.device.kind == "cpu")):
        # Last: it moves engines the other transforms quantized, measured and encrypted.
        from hpi_triton.generator.graph_hosting import GraphHostingTransform

        transforms.append(GraphHostingTransform(options.hosting, plain_models,
                                                threads=options.cpu_threads))
    for transform in transforms:
        transform.check(plain_models, pipelines, options)
        transform.prepare(requests, pipelines)
    out = Path(options.out).expanduser().resolve()
    if out.exists() and not options.force:
        raise BuildError(f"--out {out} already exists; pass --force to replace it or choose "
                         f"another path")
    sources = {r.name: load_model_dir(r.path) for r in requests}
    for pipeline in pipelines:
        # A pipeline that reads more of its roles' inference.yml than the engines do checks
        # it here: a missing tokenizer fails in a second, not after every conversion.
        pipeline.check_sources(sources)
    cache = ArtifactCache(options.cache_dir, enabled=options.use_cache)
    report = BuildReport(out=str(out), device=str(options.device), precision=options.precision,
                         hosting=options.hosting,
                         versions=package_versions(_all_packages()))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    progress = options.progress
    progress.start([r.name for r in requests])
    build_log = BuildLog(staging).__enter__()
    try:
        for request in requests:
            report.models.append(_build_model(request, sources[request.name], options, cache,
                                              staging))
            progress.model_done(request.name, report.models[-1].backend)
        by_name = {m.name: m for m in report.models}
        for pipeline in pipelines:
            with progress.step(pipeline.served_name, "write the pipeline graph"), \
                    recording_writes() as written:
                entry = pipeline.write(staging, sources, by_name)
            # Kept for the transforms, which edit these instead of reading config.pbtxt back.
            entry.configs.update(written)
            report.pipelines.append(entry)
        for transform in transforms:
            with progress.step(transform.name, f"apply {transform.name}"):
                report.transforms[transform.name] = transform.apply(staging, report)
        from hpi_triton.generator.requirements import (
            REQUIREMENTS_TXT,
            requirements_text,
            serving_requirements,
        )

        report.requirements = serving_requirements(
            options.device.kind,
            [m.backend for m in report.models if m.hosting in (Hosting.PYTHON, Hosting.GRAPH)],
            [p.requirements() for p in pipelines],
            [name for t in transforms for name in t.requirements])
        (staging / REQUIREMENTS_TXT).write_text(requirements_text(report.requirements))
        for model in report.models:
            model.precision = _served_precision(model, options.precision)
        report.seconds = round(time.perf_counter() - started, 2)
        from hpi_triton.generator.report import write_report

        write_report(report, staging)
        build_log.__exit__()
        _move_into_place(staging, out)
    except BaseException:
        build_log.__exit__()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        progress.finish()
    return report


def _served_precision(model: ModelReport, precision: str) -> str:
    """The precision ``model`` runs at as its final config says (int8 with the precision of
    its float layers)."""
    params = model.config.parameters if model.config is not None else {}
    floats = params.get("precision") or precision
    return f"int8 + {floats}" if params.get("quantization") == "int8" else floats


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
        # --backend NAME=B or NAME=B1,B2 (fallbacks in order): an unknown name raises here,
        # listing the valid ones; a known one not installed fails at selection, saying why.
        for name in request.backends:
            try:
                registry.canonical(name)
            except BackendUnavailableError:
                pass


def _all_packages() -> List[str]:
    return ["paddlepaddle", "paddle2onnx", "onnxruntime", "openvino", "tensorrt",
            "tritonclient", "nvidia-pytriton"]


def _move_into_place(staging: Path, out: Path) -> None:
    # mkdtemp made the staging folder 0700: a repository mounted into a container that runs
    # as another user (the CPU image's uid 1000) could not be read. Modes as mkdir's.
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.rename(out, old)
        os.rename(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, out)


def _build_model(request: ModelRequest, source: ModelSource, options: BuildOptions,
                 cache: ArtifactCache, repo: Path) -> ModelReport:
    """One model through the three stages: select (with its artifacts), measure, emit."""
    artifacts = ModelArtifacts(request.name, source, options, cache)
    report = ModelReport(name=request.name, source=str(source.path),
                         model_name=source.model_name, format=source.format,
                         max_batch_size=artifacts.max_batch_size)
    (backend, entry_dir, meta), why = BackendSelection(request, artifacts, report).choose()
    chosen = next(c for c in reversed(report.candidates) if c.backend == backend.name)
    if chosen.latency_ms is None:
        # For the report's chart: what the chosen engine costs at batch 1 (cached).
        chosen.latency_ms = artifacts.measure(backend, entry_dir, meta)
    report.backend = backend.name
    report.selection = why
    emit_engine_model(repo, request, artifacts, backend, entry_dir, meta, report)
    log.info("%s: %s (%s)", request.name, backend.name, why)
    return report
