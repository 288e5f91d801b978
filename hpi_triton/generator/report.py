"""The build report written into every repository: ``REPORT.md`` (Jinja2) and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

REPORT_MD = "REPORT.md"
REPORT_JSON = "build_report.json"
LATENCY_CHART = "build_latency.png"


def write_report(report, repo: Path) -> None:
    """Write ``REPORT.md`` and ``build_report.json`` into ``repo``.

    Triton ignores files at the repository root that are not model folders, so the report
    travels with the repository without affecting serving.
    """
    latencies = {m.name: {c.backend: c.latency_ms for c in m.candidates
                          if c.latency_ms is not None} for m in report.models}
    latencies = {name: per for name, per in latencies.items() if per}
    chart = None
    if latencies:
        from hpi_triton.charts import plot_backend_latency

        chart = plot_backend_latency(
            latencies, repo / LATENCY_CHART,
            title=f"Backends per model on {report.device} ({report.precision})").name
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hpi_triton.generator", "templates"),
        autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    template = env.get_template("REPORT.md.j2")
    (repo / REPORT_MD).write_text(template.render(report=report, chart=chart))
    (repo / REPORT_JSON).write_text(json.dumps(report.to_dict(), indent=2))
