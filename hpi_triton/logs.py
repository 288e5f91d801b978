"""Where log lines go: the terminal gets one line per warning (a fallback and its reason);
the build log (``build.log`` in the written repository) gets every record in full, engine
output included, as REPORT.md does.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Optional

#: The longest warning line shown on the terminal before it is cut (the rest is in the log).
TERMINAL_WIDTH = 220
BUILD_LOG = "build.log"
# paddle2onnx / Paddle prefixes that carry no information on one line
_STAMP = re.compile(r"^\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s*)?(\[(ERROR|WARNING|INFO)\]\s*)?")


def quiet_engine_imports() -> None:
    """Silence what engines print on import and that says nothing about the user's build
    (Paddle warns about ccache, a C++ extension compiler cache, on every import)."""
    warnings.filterwarnings("ignore", message="No ccache found",
                            module="paddle.utils.cpp_extension.extension_utils")


# Engine output that says nothing about why a conversion or verification failed.
_NOISE = re.compile(r"No ccache found|warnings\.warn\(|New Executor is Running|"
                    r"^\s*[IW]\d{4} \d\d:\d\d:\d\d")


def clean_reason(text: str) -> str:
    """A failure reason for the report: engine noise lines dropped (Paddle's ccache warning,
    its executor banner, glog INFO/WARNING lines), and paths inside the temporary folder —
    gone once the build ends, and stale in a cached reason — named as such."""
    lines = [line for line in text.splitlines() if not _NOISE.search(line)]
    cleaned = "\n".join(lines).strip()
    temp = re.escape(tempfile.gettempdir().rstrip("/"))
    return re.sub(temp + r"/[^\s'\"]*?([^/\s'\"]+)(?=[\s'\":,)]|$)",
                  r"<temporary folder>/\1", cleaned)


def first_cause(message: str) -> str:
    """The first line of ``message``, and when it only introduces engine output (ends with
    ``:``), the first line of that output that says error."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message
    head = lines[0]
    if head.endswith(":") and len(lines) > 1:
        cause = next((line for line in lines[1:] if "error" in line.lower()), lines[1])
        head = f"{head} {_STAMP.sub('', cause)}"
    return head


def one_line(message: str, where: str = BUILD_LOG) -> str:
    """``message`` as one terminal line: its first line, and when that only introduces engine
    output (ends with ``:``), the first line of that output that says error; cut to
    :data:`TERMINAL_WIDTH` with a pointer to ``where`` when anything was left out."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if not lines:
        return message
    head = first_cause(message)
    cut = len(head) > TERMINAL_WIDTH
    if cut:
        head = head[:TERMINAL_WIDTH - 1].rstrip() + "…"
    if cut or len(lines) > 1:
        head += f" (full reason in {where})"
    return head


class OneLineFormatter(logging.Formatter):
    """``LEVEL message`` (or the message alone, for handlers that show the level
    themselves) with the message shortened by :func:`one_line`."""

    def __init__(self, with_level: bool = True, where: str = BUILD_LOG):
        super().__init__()
        self.with_level = with_level
        self.where = where

    def format(self, record: logging.LogRecord) -> str:
        """The record's message as one line, after its level when ``with_level``."""
        line = one_line(record.getMessage(), self.where)
        # A fallback the build handled is news, not a warning: say so.
        level = "note:" if getattr(record, "handled", False) else record.levelname
        return f"{level} {line}" if self.with_level else line


def setup_terminal() -> None:
    """Log warnings and errors to stderr, each as one line. INFO records go to the build log
    only (:class:`BuildLog`): what the build chose the command prints itself."""
    quiet_engine_imports()
    root = logging.getLogger()
    # Once per process: a second command run in the same process (tests, a Python caller)
    # must not print every warning twice, as logging.basicConfig would not.
    if not any(isinstance(h.formatter, OneLineFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(OneLineFormatter())
        root.addHandler(handler)
    # Records of hpi_triton reach the build log at INFO whatever the terminal shows.
    logging.getLogger("hpi_triton").setLevel(logging.INFO)


class BuildLog:
    """Every ``hpi_triton`` log record of one build, in full, into ``<dir>/build.log``
    (a context manager; the file travels with the staged repository)."""

    def __init__(self, directory: Path):
        self.path = Path(directory) / BUILD_LOG
        self._handler: Optional[logging.Handler] = None
        self._level: Optional[int] = None

    def __enter__(self) -> BuildLog:
        self._handler = logging.FileHandler(self.path, encoding="utf-8")
        self._handler.setLevel(logging.INFO)
        self._handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger = logging.getLogger("hpi_triton")
        self._level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._handler is None:  # closed already
            return
        logger = logging.getLogger("hpi_triton")
        logger.removeHandler(self._handler)
        logger.setLevel(self._level)
        self._handler.close()
        self._handler = None
