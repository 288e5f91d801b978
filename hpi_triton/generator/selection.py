"""Stage 1 of a build: which backend serves a model. ``--backend`` > ``Hpi.selected_backends``
> measured (every usable backend converted, verified and timed; the fastest wins). The model's
own ``Hpi.selected_backends`` choice falls back in :data:`FALLBACK_ORDER` when it fails; an
explicit ``--backend NAME=B`` does not (the user asked for B: the build fails, saying why), and
``--backend NAME=B1,B2`` falls back only to the backends listed, in that order. Every candidate
and reason is in the model's report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional

from hpi_triton.errors import (
    BackendUnavailableError,
    InferenceConfigError,
    NoUsableBackendError,
    UnknownBackendError,
)
from hpi_triton.generator.artifacts import ModelArtifacts
from hpi_triton.generator.plan import CandidateReport, CandidateStatus, ModelReport, ModelRequest
from hpi_triton.logs import BUILD_LOG, first_cause
from hpi_triton.triton_models.backends import Backend, registry

# Fallback order when the first choice fails, fastest-first as usually seen on each device.
FALLBACK_ORDER = {
    "cpu": ("openvino", "onnx_runtime", "paddle_infer"),
    "gpu": ("tensorrt", "paddle_tensorrt", "onnx_runtime", "paddle_infer", "openvino"),
}

#: Timings closer than this (relative) are a tie: one build's p50s move by a few percent with
#: what else the machine runs (seen: openvino 119.75 ms vs paddle_infer 118.74 ms under a
#: parallel Docker build, the other order when quiet). A tie goes to the backend earlier in
#: :data:`FALLBACK_ORDER`, so that noise does not flip a repository between builds (on the CPU
#: that keeps OpenVINO, whose memory goes back after a large page; Paddle Inference's oneDNN
#: caches keep gigabytes).
TIE_TOLERANCE = 0.05


def pick_measured(timings: List[tuple], device: str) -> int:
    """Index of the winner among ``(latency_ms, backend_name)`` pairs: the fastest, unless one
    earlier in :data:`FALLBACK_ORDER` is within :data:`TIE_TOLERANCE` of it."""
    fastest = min(ms for ms, _ in timings)
    order = FALLBACK_ORDER.get(device, ())
    close = [i for i, (ms, _) in enumerate(timings) if ms <= fastest * (1 + TIE_TOLERANCE)]
    rank = {name: i for i, name in enumerate(order)}
    return min(close, key=lambda i: (rank.get(timings[i][1], len(order)), timings[i][0]))


class BackendSelection:
    """Chooses the backend of ``request`` among the candidates ``artifacts`` can make."""

    def __init__(self, request: ModelRequest, artifacts: ModelArtifacts, report: ModelReport):
        self.request = request
        self.artifacts = artifacts
        self.source = artifacts.source
        self.options = artifacts.options
        self.report = report

    def choose(self):
        """((backend, artifact dir, artifact meta), why) of the served backend.

        Raises:
            NoUsableBackendError: every candidate failed to convert or verify.
        """
        order, origin, requested, explicit = self._order()
        if order is None:
            return self._select_measured()
        return self._select_first_working(order, origin, requested, explicit)

    def _resolve(self, name: str, origin: str, quiet: bool = False) -> Optional[str]:
        """Canonical backend name; unknown names are errors, missing packages a fallback
        (``quiet``: only recorded as a candidate, for an explicit list that decides itself)."""
        try:
            return registry.canonical(name)
        except BackendUnavailableError as exc:
            if not quiet:
                self.report.warn(f"{origin} asks for {name!r}, but {exc}; falling back")
            self.report.candidates.append(
                CandidateReport(name, CandidateStatus.UNAVAILABLE, str(exc)))
            return None
        except UnknownBackendError as exc:
            if origin.startswith("Hpi"):
                raise InferenceConfigError(f"{self.source.path / 'inference.yml'}: field "
                                           f"'{origin}': {exc}") from exc
            raise

    def _order(self):
        """(backends to try in order or None to measure, origin, the one asked for first,
        whether the user listed them: then no others are tried)."""
        device = self.options.device.kind
        fallbacks = [b for b in FALLBACK_ORDER[device] if b in registry.names()]
        if self.request.backends:
            origin = f"--backend {self.request.name}={self.request.backend}"
            resolved = (self._resolve(n, origin, quiet=True) for n in self.request.backends)
            order = list(dict.fromkeys(b for b in resolved if b))
            return order, origin, (order[0] if order else None), True
        elif self.request.preferred:
            name, why = self.request.preferred
            origin = why
            first = self._resolve(name, origin)
        elif self.source.selected_backends.get(device):
            origin = f"Hpi.selected_backends.{device}"
            first = self._resolve(self.source.selected_backends[device], origin)
        else:
            return None, "measured", None, False
        order = ([first] if first else []) + [b for b in fallbacks if b != first]
        return order, origin, first, False

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

    def _select_first_working(self, order: List[str], origin: str, requested: Optional[str],
                              explicit: bool):
        for name in order:
            backend = registry.get(name)
            skipped = self._usable(backend)
            if skipped:
                self.report.candidates.append(skipped)
                if name == requested:
                    self.report.warn(f"{origin} asks for {name}, but {skipped.reason}; "
                                     f"falling back")
                continue
            candidate, entry = self.artifacts.make(backend)
            self.report.candidates.append(candidate)
            if entry is not None:
                failed = [c.backend for c in self.report.candidates
                          if c.status != CandidateStatus.VERIFIED]
                why = origin if name == requested else (
                    f"fallback for {origin} after {', '.join(failed)} could not be used")
                return (backend, entry[0], entry[1]), why
            if not (explicit and name == order[-1]):
                self.report.warn(f"{name} failed for model {self.request.name!r}: "
                                 f"{candidate.reason}; trying the next backend")
        if explicit:
            raise NoUsableBackendError(self._explicit_message(origin))
        raise NoUsableBackendError(self._no_backend_message())

    def _explicit_message(self, origin: str) -> str:
        """Why none of the backends the user named can serve the model, and the fix."""
        named = [c.backend for c in self.report.candidates]
        others = [b for b in FALLBACK_ORDER[self.options.device.kind]
                  if b in registry.names() and b not in named and
                  self._usable(registry.get(b)) is None]
        fix = (f"; this machine can use {', '.join(others)} for it: name one "
               f"(--backend {self.request.name}={others[0]}), list fallbacks in order "
               f"(--backend {self.request.name}={self.request.backend},{others[0]}), or leave "
               f"--backend out to measure" if others else "")
        reasons = "; ".join(f"{c.backend}: {c.status}: {c.reason}"
                            for c in self.report.candidates)
        return (f"{origin}: model {self.request.name!r} ({self.source.path}) cannot be served "
                f"with the backend(s) asked for on {self.options.device}: {reasons}{fix}")

    def _select_measured(self):
        verified = []
        for name in registry.names():
            backend = registry.get(name)
            skipped = self._usable(backend)
            if skipped:
                self.report.candidates.append(skipped)
                continue
            candidate, entry = self.artifacts.make(backend)
            self.report.candidates.append(candidate)
            if entry is None:
                # In full in build.log; the terminal gets one line once the choice is made.
                logging.getLogger("hpi_triton.build").info(
                    "%s failed for model %r: %s", name, self.request.name, candidate.reason)
                continue
            candidate.latency_ms = self.artifacts.measure(backend, entry[0], entry[1])
            verified.append((candidate.latency_ms, backend, entry))
        if not verified:
            raise NoUsableBackendError(self._no_backend_message())
        verified.sort(key=lambda item: item[0])
        timings = ", ".join(f"{b.name} {ms:.2f} ms" for ms, b, _ in verified)
        winner = pick_measured([(ms, b.name) for ms, b, _ in verified], self.options.device.kind)
        _, backend, entry = verified[winner]
        why = (f"measured fastest at batch 1: {timings}" if winner == 0 else
               f"measured at batch 1: {timings}; within {TIE_TOLERANCE:.0%} of the fastest, "
               f"so the first in the fallback order wins")
        failed = [c for c in self.report.candidates if c.status == CandidateStatus.FAILED]
        if failed:
            # Expected and handled (e.g. paddle2onnx cannot convert a legacy model): one line.
            first = first_cause(failed[0].reason or "")
            self.report.warn(
                f"model {self.request.name!r}: {' and '.join(c.backend for c in failed)} "
                f"could not be used, so {backend.name} serves it (handled, nothing to do; "
                f"details in {Path(self.options.out) / BUILD_LOG}): {first}", handled=True)
        return (backend, entry[0], entry[1]), why

    def _no_backend_message(self) -> str:
        lines = [f"  {c.backend}: {c.status}: {c.reason}" for c in self.report.candidates]
        return (f"model {self.request.name!r} ({self.source.path}): no backend converted and "
                f"verified on {self.options.device}:\n" + "\n".join(lines))
