"""What runs inside tritonserver: one package, shipped whole into every Python-backend model.

A served model's version folder holds this package (as ``python_backend/``) and a two-line
``model.py`` importing its ``TritonPythonModel`` from one of :data:`ENTRY_POINTS`. The
Python-backend stub imports ``model.py`` as ``<version>.model``, so the package's relative
imports resolve the same way there as inside ``hpi_triton``: no file lists, no path
insertion. Nothing here imports from the rest of ``hpi_triton``.

Layout: ``models/`` (entry points), ``engines`` (runners of the five engines), ``common/``
(images, parameters, BLS calls, the stub's process care), ``ocr/``, ``documents/``,
``vision/``, ``licensing/`` (the runtime half of licensing).
"""

from __future__ import annotations

import shutil
from enum import Enum
from pathlib import Path

#: This package's folder.
MODULE_DIR = Path(__file__).parent

#: The folder name the package gets inside a version folder.
SHIPPED_NAME = "python_backend"


class EntryPoint(str, Enum):
    """The kinds of served Python-backend model, each a module of ``models/``."""

    ENGINE = "engine"
    OCR = "ocr"
    TABLE = "table"
    DOC = "doc"
    FORMULA = "formula"
    VISION_PRE = "vision_pre"
    VISION_POST = "vision_post"
    LICENSE_GATE = "license_gate"


ENTRY_POINTS = tuple(EntryPoint)

_MODEL_PY = '''"""hpi-triton's {entry} model. Its code is the python_backend package beside this
file: the stub imports this file as <version>.model, so the package's relative imports
resolve."""

from .{package}.models.{entry} import TritonPythonModel  # noqa: F401
'''


def ship(version_dir: Path, entry: EntryPoint) -> None:
    """Write ``model.py`` for ``entry`` and this whole package into ``version_dir``."""
    entry = EntryPoint(entry)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(MODULE_DIR, version_dir / SHIPPED_NAME,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
    (version_dir / "model.py").write_text(
        _MODEL_PY.format(entry=entry.value, package=SHIPPED_NAME), encoding="utf-8")
