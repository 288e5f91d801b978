"""The build report written into every repository: ``REPORT.md`` (Jinja2) and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

REPORT_MD = "REPORT.md"
REPORT_JSON = "build_report.json"


def write_report(report, repo: Path) -> None:
    """Write ``REPORT.md`` and ``build_report.json`` into ``repo``.

    Triton ignores files at the repository root that are not model folders, so the report
    travels with the repository without affecting serving.
    """
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hpi_triton.generator", "templates"),
        autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    (repo / REPORT_MD).write_text(env.get_template("REPORT.md.j2").render(report=report))
    (repo / REPORT_JSON).write_text(json.dumps(report.to_dict(), indent=2))
