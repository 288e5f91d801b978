"""hpi-triton build's words routed to requests and pipeline specs, without a command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpi_triton.errors import BuildError
from hpi_triton.routing import pairs, route_build


def test_plain_models_with_backends():
    requests, pipelines = route_build(["det=/m/det", "rec=/m/rec"], ["rec=openvino"])
    assert pipelines == []
    assert [(r.name, r.path, r.backend) for r in requests] == [
        ("det", Path("/m/det"), None), ("rec", Path("/m/rec"), "openvino")]


def test_pipeline_roles_params_and_role_backends():
    requests, (spec,) = route_build(
        ["TextDetection=/m/det", "TextRecognition=/m/rec"], ["TextRecognition=paddle"],
        ["limit_side_len=960"], pipeline="OCR", name="ocr_a", pipeline_instances=3)
    assert requests == []
    assert spec.served_name == "ocr_a" and spec.instances == 3
    assert spec.roles == {"TextDetection": Path("/m/det"), "TextRecognition": Path("/m/rec")}
    assert spec.backends == {"TextRecognition": "paddle"}
    assert spec.params["limit_side_len"] == 960  # checked and converted at build time


@pytest.mark.parametrize("kwargs, message", [
    ({"models": ["det"]}, "--model 'det'; expected NAME=VALUE"),
    ({"models": ["det=/m"], "params": ["a=1"]}, "--param and --name apply to a pipeline"),
    ({"models": ["det=/m"], "backends": ["rec=openvino"]},
     r"--backend names models not given with --model: \['rec'\]"),
    ({"models": ["X=/m"], "pipeline": "nope"}, "known pipelines"),
])
def test_refusals_name_the_option(kwargs, message):
    with pytest.raises(BuildError, match=message):
        route_build(**kwargs)


def test_pairs():
    assert pairs(["a=b=c"], "--param") == [("a", "b=c")]
    with pytest.raises(BuildError, match="--param '=x'"):
        pairs(["=x"], "--param")
