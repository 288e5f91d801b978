"""Progress bars and the summary table of ``hpi-triton build`` (rich, on the terminal)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import List, Optional

from hpi_triton.generator.plan import BuildProgress, CandidateStatus


class RichBuildProgress(BuildProgress):
    """One bar over the models, with the step in progress and its elapsed time beside it.

    Log records are routed through the same console while the bar is shown, so warnings
    (a backend that failed verification, a fallback) print above the bar instead of
    breaking it.
    """

    def __init__(self, console=None):
        from rich.console import Console

        self.console = console or Console(stderr=True)
        self._progress = None
        self._task = None
        self._handlers: List[logging.Handler] = []

    def start(self, models: List[str]) -> None:
        """Show the bar and route log records through its console until ``finish``."""
        from rich.logging import RichHandler
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        root = logging.getLogger()
        self._handlers = list(root.handlers)
        level = min((h.level for h in self._handlers), default=logging.WARNING)
        for handler in self._handlers:
            root.removeHandler(handler)
        from hpi_triton.logs import OneLineFormatter

        rich_handler = RichHandler(console=self.console, show_path=False, show_time=False)
        rich_handler.setLevel(level)
        rich_handler.setFormatter(OneLineFormatter(with_level=False))
        root.addHandler(rich_handler)
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=self.console, transient=True)
        self._progress.start()
        self._task = self._progress.add_task("building", total=len(models))

    @contextlib.contextmanager
    def step(self, model: str, what: str):
        """Show ``what`` as the step in progress for ``model``."""
        if self._progress is not None:
            self._progress.update(self._task, description=f"{model}: {what}", refresh=True)
        yield

    def model_done(self, model: str, backend: str) -> None:
        """Advance the bar by one model and show the backend it got."""
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=f"{model}: {backend}",
                                  refresh=True)

    def finish(self) -> None:
        """Stop the bar and put back the log handlers that ``start`` replaced."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in self._handlers:
            root.addHandler(handler)


def print_build_summary(report, console: Optional[object] = None) -> None:
    """One row per model: chosen backend, how it is hosted, error vs Paddle, latency."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=f"Built for {report.device} ({report.precision}) in "
                        f"{report.seconds:.1f} s")
    # Long names fold onto a second line rather than being cut (80-column terminals).
    for column in ("model", "backend", "hosted", "max rel. err", "p50 ms b1",
                   "other candidates"):
        table.add_column(column, overflow="fold")
    for m in report.models:
        chosen = next((c for c in m.candidates if c.backend == m.backend), None)
        error = f"{chosen.max_relative_error:.1e}" if chosen and \
            chosen.max_relative_error is not None else ""
        latency = f"{chosen.latency_ms:.2f}" if chosen and chosen.latency_ms is not None else ""
        tried = ", ".join(
            f"{c.backend} {c.status}" + (f" {c.latency_ms:.2f} ms" if c.latency_ms else "")
            for c in m.candidates if c is not chosen
            and c.status in (CandidateStatus.VERIFIED, CandidateStatus.FAILED))
        table.add_row(m.name, m.backend, m.hosting, error, latency, tried or "-")
    console.print(table)


@contextlib.contextmanager
def prediction_progress(total: int, show: bool):
    """A bar over ``total`` inputs on stderr while ``hpi-triton infer`` runs (only when
    ``show``: a terminal); yields the callback that advances it by one
    :class:`~hpi_triton.results.Prediction`, counting failures."""
    if not show:
        yield lambda prediction: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    failed = [0]
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True,
                        # JSON lines piped to a file must stay on stdout, not join the bar
                        redirect_stdout=sys.stdout.isatty())
    task = progress.add_task("inputs", total=total)

    def advance(prediction) -> None:
        failed[0] += 0 if prediction.ok else 1
        progress.update(task, advance=1, description=f"inputs ({failed[0]} failed)"
                        if failed[0] else "inputs")

    with progress:
        yield advance
