"""Stage 2 of a build: a candidate backend's artifact for one model, converted and verified
against Paddle Inference (content-addressed in the cache), and its batch-1 latency."""

from __future__ import annotations

import hashlib
import time
from functools import cache
from pathlib import Path
from typing import Dict, Optional

from hpi_triton.core.cache import (
    ArtifactCache,
    cache_key,
    device_architecture,
    package_versions,
)
from hpi_triton.core.model_dir import ModelSource
from hpi_triton.core.verify import (
    TOLERANCES,
    Reference,
    compute_reference,
    measure_latency,
)
from hpi_triton.errors import ConversionError, VerificationError
from hpi_triton.generator import samples as sample_inputs
from hpi_triton.generator.plan import BuildOptions, CandidateReport, CandidateStatus
from hpi_triton.logs import clean_reason
from hpi_triton.python_backend import engines
from hpi_triton.triton_models.backends import Backend, ConvertContext

DEFAULT_MAX_BATCH_SIZE = 8


@cache
def _engines_digest() -> str:
    return hashlib.sha256(Path(engines.__file__).read_bytes()).hexdigest()[:16]


def max_batch_size(source: ModelSource, options: BuildOptions) -> int:
    """Triton's max_batch_size for ``source``: 0 without a batch dim, else ``--max-batch-size``,
    the Hpi dynamic shapes' max batch, or :data:`DEFAULT_MAX_BATCH_SIZE`."""
    if not source.batched:
        return 0
    if options.max_batch_size:
        return options.max_batch_size
    if source.dynamic_shapes:
        return max(1, min(r[2][0] for r in source.dynamic_shapes.values()))
    return DEFAULT_MAX_BATCH_SIZE


class ModelArtifacts:
    """The artifacts of model ``name`` (from ``source``) for each backend asked for."""

    def __init__(self, name: str, source: ModelSource, options: BuildOptions,
                 cache: ArtifactCache):
        self.name = name
        self.source = source
        self.options = options
        self.cache = cache
        self.max_batch_size = max_batch_size(source, options)
        self.ctx = ConvertContext(device=options.device, precision=options.precision,
                                  cache=cache, max_batch_size=self.max_batch_size,
                                  cpu_threads=options.cpu_threads)
        self.sample_shapes = sample_inputs.sample_shapes(source, self.max_batch_size)
        self._reference: Optional[Reference] = None

    @property
    def reference(self) -> Reference:
        """Paddle Inference's outputs on the deterministic sample inputs (computed once)."""
        if self._reference is None:
            feeds = [sample_inputs.make_inputs(self.source, shapes, seed=i)
                     for i, shapes in enumerate(self.sample_shapes)]
            self._reference = compute_reference(self.source, feeds, self.options.cpu_threads)
        return self._reference

    def runtime_params(self, params: Dict[str, str]) -> Dict[str, str]:
        """The engine parameters an artifact runs with on this build's device."""
        runtime = dict(params)
        runtime["device"] = self.options.device.kind
        runtime["device_id"] = str(self.options.device.index)
        runtime["cpu_threads"] = str(self.options.cpu_threads)
        return runtime

    def make(self, backend: Backend):
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
            result = backend.verify(out_dir, self.runtime_params(params), reference,
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
            with self.options.progress.step(self.name,
                                            f"{backend.name}: convert + verify"):
                entry = self.cache.get_or_create(key, create)
        except (ConversionError, VerificationError) as exc:
            return CandidateReport(backend.name, CandidateStatus.FAILED, clean_reason(str(exc)),
                                   seconds=round(time.perf_counter() - started, 2)), None
        candidate = CandidateReport(backend.name, CandidateStatus.VERIFIED,
                                    max_relative_error=entry.meta["max_relative_error"],
                                    cache_hit=entry.hit,
                                    seconds=round(time.perf_counter() - started, 2))
        return candidate, (entry.directory, entry.meta)

    def measure(self, backend: Backend, entry_dir: Path, meta: dict) -> float:
        """p50 latency (ms) of the artifact at batch 1, opt shapes (cached)."""
        shapes = sample_inputs.opt_shapes(self.source, self.max_batch_size)
        key = cache_key(kind="latency", artifact=str(entry_dir.name), shapes=shapes,
                        threads=self.options.cpu_threads, device=str(self.options.device))
        path = self.cache.measurement_path(key)
        cached = self.cache.read_json(path)
        if cached:
            return cached["p50_ms"]
        with self.options.progress.step(self.name, f"{backend.name}: measure latency"):
            runner = engines.create_runner(entry_dir, self.runtime_params(meta["params"]))
            timing = measure_latency(runner, sample_inputs.make_inputs(self.source, shapes))
        self.cache.write_json(path, timing)
        return timing["p50_ms"]
