"""Run a conversion step in a child Python process.

Converters (paddle2onnx, OpenVINO's frontends, TensorRT's builder) print freely and can crash
the process on a bad model; in a child, a crash becomes a :class:`ConversionError` carrying the
tail of what the converter said, and the build goes on with the next backend.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hpi_triton.errors import ConversionError

_TAIL_LINES = 4
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def summarize_output(text: str) -> str:
    """The lines of a converter's output worth quoting: its error lines, then its last lines."""
    lines = [_ANSI.sub("", ln).rstrip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"error|exception|fail|unimplemented", ln, re.I)]
    picked = errors[-6:] + [ln for ln in lines[-_TAIL_LINES:] if ln not in errors[-6:]]
    return "\n    ".join(ln.strip()[:300] for ln in picked)


def _child_env() -> dict:
    """This environment, with hpi_triton importable from the scratch directory too."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env


def run_isolated(target: str, kwargs: dict, what: str, timeout: float = 1800) -> None:
    """Call ``module:function(**kwargs)`` in a child process.

    Raises:
        ConversionError: the child failed, crashed or timed out; the message names ``what``
            and quotes the end of its output.
    """
    command = [sys.executable, "-m", "hpi_triton.core.isolated", target, json.dumps(kwargs)]
    try:
        # Converters leave scratch files in their working directory (paddle2onnx writes
        # sym_shape_infer_temp.onnx and uuid-named files): give them a throwaway one.
        with tempfile.TemporaryDirectory(prefix="hpi-triton-convert-") as scratch:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  cwd=scratch, env=_child_env())
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"{what}: timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = summarize_output(proc.stdout + proc.stderr) or f"exit code {proc.returncode}"
        raise ConversionError(f"{what} failed:\n    {tail}")


def main() -> None:
    """The isolated child process: call ``module:function`` (argv 1) with JSON kwargs (argv 2)."""
    target, kwargs = sys.argv[1], json.loads(sys.argv[2])
    module_name, function_name = target.split(":")
    getattr(importlib.import_module(module_name), function_name)(**kwargs)


if __name__ == "__main__":
    main()
