"""The pipeline registry: every pipeline one declared class, found without a list, its facts
read by everything else; nothing outside a pipeline's own module branches on its name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from hpi_triton.ensembles import pipeline_names, pipeline_spec, registry
from hpi_triton.errors import BuildError

ROOT = Path(__file__).resolve().parents[2] / "hpi_triton"


def test_every_pipeline_declares_its_facts():
    kinds = registry.kinds()
    assert {"OCR", "table_recognition", "seal_recognition", "layout_parsing",
            "formula_recognition", "doc_preprocessor", "image_classification",
            "object_detection", "semantic_segmentation", "instance_segmentation"} <= set(kinds)
    assert pipeline_names() == tuple(kinds) and pipeline_names()[0] == "OCR"
    for name, kind in kinds.items():
        assert kind.pipeline_name == name and kind.summary, name
        assert kind.comparable() and kind.predict_params, name
        assert all(isinstance(p, str) and p for p in kind.packages), name
    assert [n for n, k in kinds.items() if k.fast] == ["OCR", "layout_parsing",
                                                       "table_recognition"]


def test_lookup_by_name_any_case_and_unknown_names_listed():
    assert registry.get("ocr") is registry.get("OCR")
    with pytest.raises(BuildError, match="known pipelines: OCR, ") as info:
        registry.get("panoptic_segmentation")
    assert "image_classification" in str(info.value)


def test_a_name_declared_twice_is_refused():
    class Again(registry.PipelineKind):
        pipeline_name = "OCR"

    with pytest.raises(TypeError, match="declared twice"):
        registry.register(Again)
    with pytest.raises(TypeError, match="sets pipeline_name"):
        registry.register(type("Nameless", (registry.PipelineKind,), {}))


def test_fast_adds_its_parameters_unless_given_under_any_name(tmp_path):
    table = registry.get("table_recognition")
    added = table.with_fast_params({"limit_side_len": "736"})
    assert added == {**table.fast_params, "limit_side_len": "736"} and table.fast_params
    # an alias of a fast parameter keeps the user's value and adds no second one
    given = table.with_fast_params({"text_det_unclip_ratio": "1.8"})
    assert given["text_det_unclip_ratio"] == "1.8" and "unclip_ratio" not in given
    with pytest.raises(BuildError, match="--fast applies to pipelines that read general text"):
        registry.get("seal_recognition").with_fast_params({})
    roles = {role: tmp_path for role in ("TextDetection", "TextRecognition")}
    assert pipeline_spec("OCR", roles, {}, fast=True).params["text_rec_batching"] == \
        "width_buckets"


def test_the_paddlex_api_serves_what_pipelines_declare(monkeypatch):
    """A pipeline declaring a PaddleX endpoint is served there, request fields from its
    parameters: nothing in paddlex_api names it."""
    from hpi_triton.ensembles.serving import PaddleXEndpoint
    from hpi_triton.paddlex_api import pipelines
    from hpi_triton.python_backend.common.parameters import Parameter, ParameterSet

    class Probe(registry.PipelineKind):
        pipeline_name = "probe_pipeline"
        paddlex_endpoint = PaddleXEndpoint(
            "/probe", "", "image", ParameterSet.of(Parameter("level", int, 1, serving="lvl")),
            convert=dict)

    monkeypatch.setitem(registry._REGISTRY, "probe_pipeline", Probe)
    pipelines._apis.cache_clear()
    try:
        api = pipelines.pipeline_api("probe_pipeline")
        assert api.endpoint == "/probe" and list(api.fields) == ["lvl"]
        assert api.parameters(api.request_model(image="x", lvl=3)) == {"level": 3}
        assert "OCR" in pipelines.kinds() and "image_multilabel_classification" not in \
            pipelines.kinds()
    finally:
        pipelines._apis.cache_clear()


def test_requirements_follow_the_built_stages(tmp_path):
    roles = {role: tmp_path for role in ("LayoutDetection", "TextDetection", "TextRecognition")}
    plain = pipeline_spec("layout_parsing", roles)
    with_formulas = pipeline_spec("layout_parsing", {**roles, "FormulaRecognition": tmp_path})
    assert "tokenizers" not in plain.requirements()
    assert {"pyclipper", "shapely", "Pillow", "tokenizers"} <= set(with_formulas.requirements())


def _name_comparisons(path: Path, names):
    """(line, name) of each comparison with a pipeline name literal in ``path``, and of each
    pipeline name keying a dict literal (a table by pipeline name)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Dict):
            found += [(node.lineno, k.value) for k in node.keys
                      if isinstance(k, ast.Constant) and k.value in names]
        if isinstance(node, ast.Compare):
            for part in [node.left, *node.comparators]:
                values = part.elts if isinstance(part, (ast.Tuple, ast.List, ast.Set)) else [part]
                found += [(node.lineno, v.value) for v in values
                          if isinstance(v, ast.Constant) and v.value in names]
    return found


def test_no_module_but_a_pipelines_own_branches_on_its_name():
    """Build-side code (everything but the runtime package) compares pipeline names only in
    the module declaring that pipeline. PaddleX's YAML nesting (paddlex_yaml) is PaddleX's
    format, not a pipeline's facts."""
    kinds = registry.kinds()
    owner = {name: Path(__import__(kind.__module__, fromlist=["_"]).__file__).resolve()
             for name, kind in kinds.items()}
    exempt = {ROOT / "ensembles" / "paddlex_yaml.py"}
    bad = []
    for path in ROOT.rglob("*.py"):
        if "python_backend" in path.parts or path in exempt:
            continue
        bad += [f"{path.relative_to(ROOT)}:{line} {name}"
                for line, name in _name_comparisons(path, set(kinds)) if owner[name] != path]
    assert bad == []


def test_the_name_check_is_not_vacuous(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("if kind in ('OCR', 'x'):\n    pass\nif kind == 'seal_recognition':\n"
                      "    pass\nTABLE = {'OCR': 1}\n")
    assert sorted(_name_comparisons(sample, {"OCR", "seal_recognition"})) == [
        (1, "OCR"), (3, "seal_recognition"), (5, "OCR")]


def test_pipeline_report_round_trips_and_leaves_unset_fields_out():
    from hpi_triton.generator.plan import PipelineReport

    entry = PipelineReport("OCR", "OCR", {"TextDetection": ["OCR_TextDetection", "x", "y"]},
                           {"thresh": 0.3}, text_rec_batch_size=6)
    data = entry.to_dict()
    assert data == {"pipeline": "OCR", "served_name": "OCR", "params": {"thresh": 0.3},
                    "roles": {"TextDetection": ["OCR_TextDetection", "x", "y"]},
                    "text_rec_batch_size": 6}
    assert PipelineReport.from_dict(data) == entry
    # a report written before served_name existed, with a key this version does not know
    old = PipelineReport.from_dict({"pipeline": "OCR", "roles": {}, "params": {}, "new": 1})
    assert old.served_name == "OCR"


def test_pipelines_and_flows_are_composed_not_inherited():
    """No pipeline class derives from another pipeline, and no document flow from another
    flow: each composes the stages it was built with."""
    from hpi_triton.python_backend.documents import table_pipeline

    kinds = registry.kinds()
    for name, kind in kinds.items():
        parents = [k.pipeline_name for k in kind.__mro__[1:] if k in kinds.values()]
        assert parents == [], f"{name} derives from {parents}"
    assert set(table_pipeline.FLOWS) == {"table_recognition", "seal_recognition",
                                         "layout_parsing"} <= set(kinds)
    for flow in table_pipeline.FLOWS.values():
        assert flow.__bases__ == (object,) and flow.task in kinds


def test_the_document_graph_writes_only_the_stages_it_was_built_with(tmp_path):
    from hpi_triton.ensembles.stages import LayoutStage, SealStage, StructureStage

    base = {role: tmp_path for role in ("TextDetection", "TextRecognition")}
    table = pipeline_spec("table_recognition", {**base, "TableStructureRecognition": tmp_path})
    assert [type(s) for s in table.stages] == [StructureStage]
    parsing = pipeline_spec("layout_parsing", {**base, "LayoutDetection": tmp_path,
                                               "SealTextDetection": tmp_path})
    assert [type(s) for s in parsing.stages] == [SealStage, LayoutStage]
    assert parsing.params["use_seal_recognition"] is True
    seal = pipeline_spec("seal_recognition", base)
    assert seal.stages == [] and seal.ocr.text_type == "seal"
