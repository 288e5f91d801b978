"""Every entry point, shipped into a version folder as a build ships it, imports the way the
Python-backend stub imports it (``<version>.model``): the package travels whole, its relative
imports resolve, nothing is missing."""

from __future__ import annotations

import pytest

from hpi_triton.python_backend import ENTRY_POINTS, SHIPPED_NAME, EntryPoint, ship
from tests.support.stub import stub_imports


@pytest.mark.parametrize("entry", ENTRY_POINTS, ids=lambda e: e.value)
def test_each_entry_point_imports_as_the_stub_imports_it(entry, tmp_path):
    model_dir = tmp_path / f"m_{entry.value}"
    ship(model_dir / "1", entry)
    assert (model_dir / "1" / SHIPPED_NAME / "common" / "bls.py").is_file()
    assert not list((model_dir / "1").rglob("__pycache__"))
    with stub_imports(model_dir) as import_version:
        model = import_version("1.model")
        assert model.TritonPythonModel.__module__ == f"1.{SHIPPED_NAME}.models.{entry.value}"
        assert callable(model.TritonPythonModel.execute)


def test_the_shipped_package_imports_nothing_from_the_host(tmp_path):
    """The runtime code never reaches back into hpi_triton (a serving image need not have
    it): no shipped module imports it, and every in-package import is relative."""
    import ast

    ship(tmp_path / "1", EntryPoint.ENGINE)
    offenders = []
    for path in (tmp_path / "1" / SHIPPED_NAME).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and
                     not node.level else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("hpi_triton", "python_backend", "bls",
                                                 "engines", "image_io", "vision_ops")]
    assert not offenders
