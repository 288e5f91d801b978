"""Verification: every artifact must reproduce Paddle Inference on the source model.

The reference is Paddle Inference on the source Paddle program (or ONNX Runtime on the source
ONNX when the directory has no Paddle model). The error measure is, per output,
``max|artifact - reference| / max(max|reference|, SCALE_FLOOR)``: a relative error on the
output's own scale, robust to outputs that are zero in places (probability maps, softmax tails).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import numpy as np

from hpi_triton.core.model_dir import ModelSource
from hpi_triton.errors import VerificationError
from hpi_triton.python_backend import engines

TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}


@dataclass
class Reference:
    """Reference inputs and outputs (outputs by position, in the source's output order)."""

    engine: str
    inputs: List[Dict[str, np.ndarray]]
    outputs: List[List[np.ndarray]]


def reference_params(source: ModelSource, cpu_threads: int = 0) -> Dict[str, str]:
    """Engine parameters that run the source model itself."""
    if source.has_paddle:
        return {"engine": "paddle", "model_file": source.program_file.name,
                "params_file": source.params_file.name, "onednn": "auto",
                "cpu_threads": str(cpu_threads)}
    return {"engine": "onnxruntime", "model_file": source.onnx_file.name,
            "cpu_threads": str(cpu_threads)}


def reference_runner(source: ModelSource, cpu_threads: int = 0) -> engines.Runner:
    """The source model itself, loaded in-process (the reference every artifact and every
    served result is compared with)."""
    return engines.create_runner(source.path, reference_params(source, cpu_threads))


def compute_reference(source: ModelSource, samples: List[Dict[str, np.ndarray]],
                      cpu_threads: int = 0) -> Reference:
    """Run the source model in-process on ``samples``."""
    runner = reference_runner(source, cpu_threads)
    outputs = []
    for feed in samples:
        result = runner.run(feed)
        outputs.append([np.asarray(result[n]) for n in runner.output_names])
    engine = "Paddle Inference" if source.has_paddle else "ONNX Runtime (source ONNX)"
    return Reference(engine=engine, inputs=samples, outputs=outputs)


#: The smallest scale an output's error is measured against. A detection map of noise input
#: is ~0 everywhere (max 3e-8 for PP-OCRv4 det on a 32x32 sample): against its own scale, float
#: rounding (1e-7) read as a relative error of 1, and every GPU artifact and OpenVINO's
#: PP-OCRv5 det failed verification on an H200 and on the CPU (2026-12-04) for that alone.
#: Below this scale the check is absolute: tolerance x SCALE_FLOOR (1e-6 at fp32).
SCALE_FLOOR = 1e-2


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|actual - expected| / max(max|expected|, SCALE_FLOOR)`` (inf on shape mismatch
    or NaN).

    For integer outputs (label maps, class ids, counts) it is the fraction of elements that
    differ: an argmax flips on a near-tie rather than drifting.
    """
    if actual.shape != expected.shape:
        return float("inf")
    if expected.dtype.kind in "iub" and actual.dtype.kind in "iub":
        return float(np.mean(actual != expected)) if expected.size else 0.0
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if not np.all(np.isfinite(a)) and not np.array_equal(np.isnan(a), np.isnan(e)):
        return float("inf")
    scale = max(float(np.max(np.abs(e))) if e.size else 0.0, SCALE_FLOOR)
    diff = float(np.max(np.abs(a - e))) if e.size else 0.0
    return diff / scale


@dataclass
class VerificationResult:
    """A passed verification: the worst relative error found and the engine's I/O names."""

    max_relative_error: float
    tolerance: float
    samples: int
    reference: str
    engine_inputs: List[str]
    engine_outputs: List[str]


def verify_artifact(artifact_dir: Path, params: Dict[str, str], reference: Reference,
                    tolerance: float) -> VerificationResult:
    """Load the artifact with the serving engine code and compare it with ``reference``.

    Raises:
        VerificationError: the artifact does not load, does not run, or is off by more than
            ``tolerance``; the message says which output and by how much.
    """
    label = f"the {params.get('engine')} artifact"
    try:
        runner = engines.create_runner(artifact_dir, params)
    except Exception as exc:
        raise VerificationError(f"{label}: does not load: {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc
    worst = 0.0
    for feed, expected in zip(reference.inputs, reference.outputs):
        shapes = {k: list(v.shape) for k, v in feed.items()}
        try:
            result = runner.run(feed)
        except Exception as exc:
            raise VerificationError(f"{label}: fails on sample inputs {shapes}: "
                                    f"{type(exc).__name__}: {_first_line(exc)}") from exc
        actual = [np.asarray(result[n]) for n in runner.output_names]
        if len(actual) != len(expected):
            raise VerificationError(f"{label}: returns {len(actual)} outputs; the reference "
                                    f"returns {len(expected)}")
        for position, (a, e) in enumerate(zip(actual, expected)):
            error = relative_error(a, e)
            if error > tolerance:
                raise VerificationError(
                    f"{label}: output {position} ({runner.output_names[position]}) differs from "
                    f"{reference.engine} on inputs {shapes}: relative error {error:.3g} > "
                    f"{tolerance:g} (shapes {list(a.shape)} vs {list(e.shape)})")
            worst = max(worst, error)
    return VerificationResult(worst, tolerance, len(reference.inputs), reference.engine,
                              list(runner.input_names), list(runner.output_names))


def measure_latency(runner: engines.Runner, feed: Dict[str, np.ndarray], runs: int = 10,
                    warmup: int = 2, budget_s: float = 5.0) -> Dict[str, float]:
    """p50 / min latency in ms of ``runner`` on ``feed`` (stops early past ``budget_s``)."""
    for _ in range(warmup):
        runner.run(feed)
    times = []
    start = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(feed)
        times.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - start > budget_s and len(times) >= 3:
            break
    return {"p50_ms": float(np.median(times)), "min_ms": float(np.min(times)), "runs": len(times)}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[0][:400] if lines else type(exc).__name__
