"""The pipelines' reference, generated from their declarations: roles and parameters per
pipeline (``hpi-triton pipelines NAME``, docs/parameters.md)."""

from __future__ import annotations

from typing import List, Type

from hpi_triton.ensembles import registry

HEADER = ("# Pipeline parameters\n\n"
          "Generated from the pipelines' declarations (`hpi-triton pipelines --markdown > "
          "docs/parameters.md`; tests/unit/test_parameters.py checks it is current). Each "
          "parameter can be set at build time (`--param NAME=VALUE`, or the PaddleX pipeline "
          "YAML), per request (a Triton request parameter, `Client.predict(..., NAME=VALUE)`), "
          "and through the PaddleX serving API by its field. A default of — is set by the "
          "build (from the roles built, or the model's inference.yml).\n")


def _value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value}`"


def rows(kind: Type[registry.PipelineKind]) -> List[List[str]]:
    """One row per parameter: name, values, default, PaddleX names, description."""
    out = []
    for parameter in kind.parameters.values():
        names = [f"`{a}`" for a in parameter.aliases]
        if parameter.serving:
            names.append(f"API `{parameter.serving}`")
        out.append([f"`{parameter.name}`", parameter.expected(), _value(parameter.default),
                    ", ".join(names) or "—", parameter.description])
    return out


def roles_line(kind: Type[registry.PipelineKind]) -> str:
    """``Roles: A, B (required); C, D`` of one pipeline."""
    required = ", ".join(kind.required_roles)
    optional = ", ".join(kind.optional_roles)
    parts = [f"{required} (required)"] if required else []
    if optional:
        parts.append(f"{optional} (optional)")
    return "Roles: " + "; ".join(parts)


def markdown() -> str:
    """docs/parameters.md."""
    text = [HEADER]
    for name, kind in registry.kinds().items():
        text += [f"\n## {name}\n", f"{kind.summary}. {roles_line(kind)}.\n",
                 "| parameter | values | default | PaddleX's names | what it does |",
                 "|---|---|---|---|---|"]
        text += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                 for row in rows(kind)]
    return "\n".join(text) + "\n"
