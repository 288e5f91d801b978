"""The README's supported-models table is the one tests/support/model_table.py generates, and
every test it names exists."""

from __future__ import annotations

import json
import re

from tests.support import model_table
from tests.support.families import FAMILIES


def test_readme_table_is_the_generated_one():
    """From the committed record of a full test session (regenerate both after one)."""
    readme = (model_table.ROOT / "docs" / "models.md").read_text()
    record = json.loads((model_table.ROOT / "tests/golden/verified_backends.json").read_text())
    assert model_table.readme_table(readme) == model_table.render(record["models"])


def test_every_paddlex_model_is_listed_once():
    names = [r.model for r in model_table.rows()]
    assert len(names) == len(set(names)) > 200
    for required in ("LaTeX_OCR_rec", "PP-OCRv4_server_det", "PP-OCRv4_server_rec",
                     "ch_SVTRv2_rec", "ch_RepSVTR_rec"):
        row = next(r for r in model_table.rows() if r.model == required)
        assert row.test != "not covered by a test", row


def test_every_named_test_exists():
    families = {f.served_name for f in FAMILIES}
    for cover in model_table.COVERAGE:
        path, _, node = cover.test.partition("::")
        function, _, param = node.partition("[")
        source = (model_table.ROOT / path).read_text()
        assert re.search(rf"^def {function}\(", source, re.M), cover.test
        if "test_families.py" in path:
            assert param.rstrip("]") in families, cover.test
        elif param:  # a parametrize pair ("pipeline", "kind") of that file
            pair = ", ".join(f'"{part}"' for part in param.rstrip("]").split("-"))
            assert f"({pair})" in source, cover.test


def test_backends_come_from_the_record():
    rows = {r.model: r for r in model_table.rows({"LaTeX_OCR_rec": ["paddle_infer"],
                                                  "ResNet50_vd": ["onnx_runtime"]})}
    assert rows["LaTeX_OCR_rec"].backends == "paddle_infer"
    assert rows["ResNet152"].backends == "onnx_runtime"  # the family's tested model
    assert rows["UniMERNet"].backends == "—" and rows["UniMERNet"].family == "—"
