"""Every `hpi-triton ...` command the README shows parses against the real command line: its
command exists and every option and value it gives is accepted (nothing runs)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer import _click as click  # typer's own click (typer >= 0.29)
from typer.core import TyperGroup

from hpi_triton.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_commands():
    """(file, line number, argv) of each hpi-triton command in a fenced code block."""
    found = []
    for doc in DOCS:
        lines = doc.read_text().splitlines()
        fenced = False
        index = 0
        while index < len(lines):
            line = lines[index]
            if line.lstrip().startswith("```"):
                fenced = not fenced
            elif fenced and re.match(r"\s*(\$ )?hpi-triton\s", line):
                start = index
                text = line.split("#", 1)[0] if " #" in line else line
                while text.rstrip().endswith("\\") and index + 1 < len(lines):
                    index += 1
                    text = text.rstrip()[:-1] + " " + lines[index].split(" #", 1)[0]
                text = _without_optional(text.strip().removeprefix("$ "))
                argv = []
                for token in shlex.split(text)[1:]:
                    if token in (">", ">>", "|", "&&", ";", "&") or token.startswith("2>"):
                        break  # the shell's part of the line
                    if token not in ("…", "..."):  # "the rest as above"
                        argv.append(token)
                found.append((doc.name, start + 1, argv))
            index += 1
    return found


def _without_optional(text: str) -> str:
    """The command with its synopsis' optional parts (``[--model ROLE=DIR]``, nested too)
    left out: what is left must parse as it is."""
    out, depth = [], 0
    for char in text:
        depth += char == "["
        if depth == 0:
            out.append(char)
        depth -= char == "]" and depth > 0
    return "".join(out)


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("doc, line, argv", COMMANDS,
                         ids=[f"{d}:{n}" for d, n, _ in COMMANDS])
def test_readme_command_parses(doc, line, argv):
    command = typer.main.get_command(app)
    context = click.Context(command, info_name="hpi-triton")
    rest = list(argv)
    while isinstance(command, TyperGroup):
        assert rest, f"{doc}:{line}: hpi-triton {' '.join(argv)}: no command"
        name, rest = rest[0], rest[1:]
        sub = command.get_command(context, name)
        assert sub is not None, f"{doc}:{line}: no command {name!r}"
        context = click.Context(sub, info_name=name, parent=context)
        command = sub
    # A real parse: unknown options, bad choices and missing values raise here.
    try:
        command.make_context(context.info_name, rest, parent=context.parent)
    except click.exceptions.NoArgsIsHelpError:
        pass
    except click.exceptions.UsageError as exc:
        pytest.fail(f"{doc}:{line}: hpi-triton {' '.join(argv)}: {exc.format_message()}")
