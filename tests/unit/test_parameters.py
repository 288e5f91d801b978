"""Parameters declared once: conversion and errors that say the range, composition, and each
pipeline's declared set agreeing with what its build actually takes."""

from __future__ import annotations

import pytest

from hpi_triton.ensembles import pipeline_spec, registry
from hpi_triton.errors import BuildError
from hpi_triton.python_backend.common.parameters import Parameter, ParameterError, ParameterSet
from hpi_triton.python_backend.ocr import ocr_pipeline


def test_errors_name_the_parameter_the_range_and_the_value():
    side = ocr_pipeline.PARAMETERS["limit_side_len"]
    with pytest.raises(ParameterError, match="'limit_side_len' must be an integer ≥ 1, got -3"):
        side.convert(-3)
    with pytest.raises(ParameterError, match="must be a number in \\[0, 1\\], got '1.5'"):
        ocr_pipeline.PARAMETERS["thresh"].convert("1.5")
    with pytest.raises(ParameterError, match="one of 'min', 'max', 'resize_long', got 'wide'"):
        ocr_pipeline.PARAMETERS["limit_type"].convert("wide")
    with pytest.raises(ParameterError, match="must be a number > 0, got 0"):
        ocr_pipeline.PARAMETERS["unclip_ratio"].convert(0)
    with pytest.raises(ParameterError, match="true or false, got 'maybe'"):
        ocr_pipeline.PARAMETERS["use_textline_orientation"].convert("maybe")
    size = Parameter("target_size", int, minimum=32, also=(-1,))
    assert size.convert("-1") == -1 and size.convert("64") == 64
    with pytest.raises(ParameterError, match="an integer ≥ 32, or -1, got 8"):
        size.convert(8)


def test_strings_from_grpc_and_param_convert_to_the_declared_type():
    params = ocr_pipeline.PARAMETERS
    assert params["limit_side_len"].convert("960") == 960
    assert params["limit_side_len"].convert("960.0") == 960
    with pytest.raises(ParameterError):
        params["limit_side_len"].convert("9.5")
    with pytest.raises(ParameterError):
        params["thresh"].convert(True)  # a switch is not a threshold
    assert params["use_doc_unwarping"].convert("False") is False


def test_coerce_resolves_aliases_refuses_unknown_names_and_keeps_the_base():
    merged = ocr_pipeline.coerce_parameters({"text_det_thresh": "0.4"},
                                            {"thresh": 0.3, "box_thresh": 0.6})
    assert merged == {"thresh": 0.4, "box_thresh": 0.6}
    with pytest.raises(ParameterError, match="unknown OCR parameter 'seal_det_thresh'"):
        ocr_pipeline.coerce_parameters({"seal_det_thresh": 0.2})
    assert ocr_pipeline.coerce_parameters({"seal_det_thresh": 0.2}, {}, "seal") == {
        "thresh": 0.2}


def test_sets_compose_rename_and_refuse_a_conflicting_declaration():
    a = ParameterSet.of(Parameter("x", int, 1, minimum=0, serving="xField"))
    b = ParameterSet.of(Parameter("y", bool, True))
    assert list(a | b) == ["x", "y"] and (a | b).defaults() == {"x": 1, "y": True}
    renamed = a.prefixed({"x": ("outer_x", "outerX")})
    assert renamed["outer_x"].serving == "outerX" and renamed["outer_x"].minimum == 0
    assert a.with_defaults({"x": 5}).defaults() == {"x": 5}
    with pytest.raises(ValueError, match="declared twice"):
        ParameterSet.of(Parameter("x", int, 1), Parameter("x", int, 2))


def _spec(name, tmp_path, params=None):
    kind = registry.get(name)
    roles = {role: tmp_path for role in kind.required_roles + kind.optional_roles}
    return pipeline_spec(name, roles, params or {})


@pytest.mark.parametrize("name", registry.names())
def test_each_pipeline_takes_what_it_declares(name, tmp_path):
    """Every declared parameter is accepted by the build (--param / YAML) at its default, the
    build's defaults are the declared ones, and a bad value is refused saying the range."""
    kind = registry.get(name)
    assert kind.parameters, name
    defaults = kind.parameters.defaults()
    spec = _spec(name, tmp_path, {k: str(v) for k, v in defaults.items()})
    built = getattr(spec, "params", {})
    for key, value in defaults.items():
        if key in built:
            assert built[key] == value, (name, key)
    numbers = [p for p in kind.parameters.values()
               if p.kind in (int, float) and p.minimum is not None and not p.also]
    if numbers and hasattr(spec, "params") and name != "doc_preprocessor":
        bad = numbers[0]
        with pytest.raises(BuildError, match=f"'{bad.name}' must be"):
            _spec(name, tmp_path, {bad.name: bad.minimum - 1})


def test_docs_parameters_md_is_generated_from_the_declarations():
    from pathlib import Path

    from hpi_triton.ensembles import reference

    docs = Path(__file__).resolve().parents[2] / "docs" / "parameters.md"
    assert docs.read_text() == reference.markdown(), \
        "regenerate: hpi-triton pipelines --markdown > docs/parameters.md"
    for name in registry.names():
        assert f"\n## {name}\n" in docs.read_text()


def test_graph_settings_round_trip_and_refuse_fields_they_do_not_know():
    from hpi_triton.python_backend.doc_preprocessor.doc_ops import DocSettings
    from hpi_triton.python_backend.ocr.ocr_pipeline import OCRSettings

    ocr = OCRSettings(models={"TextDetection": ["OCR_TextDetection", "x", "y"]},
                      params={"thresh": 0.3}, det_normalize={"mean": [0.5] * 3,
                                                             "std": [0.5] * 3, "scale": 1 / 255},
                      rec_batch_size=6, doc=DocSettings(["op"], ["0", "180"]).to_json())
    data = ocr.to_json()
    assert "cls_resize" not in data and data["doc"]["orientation_labels"] == ["0", "180"]
    assert OCRSettings.from_json(data) == ocr and OCRSettings.from_json(ocr) is ocr
    with pytest.raises(ValueError, match="OCRSettings.*\\['det_dilate'\\].*rebuild"):
        OCRSettings.from_json({**data, "det_dilate": True})
    assert DocSettings.from_json({}) == DocSettings()
