"""formula_recognition on the real tritonserver: LaTeX_OCR_rec stand-ins (random weights, the
export's signature and decoding loop; tests/support/formula_dataset.py) served as PaddleX's
pipeline, its bad inputs, and the engines that cannot carry its decoding loop. Parity with
PaddleX itself is in test_fidelity.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from hpi_triton import wheel_models as wm
from hpi_triton.client import Client
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import InvalidRequestError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.doc_preprocessor import doc_ops
from hpi_triton.python_backend.documents import formula_ops
from hpi_triton.server import TritonServer
from tests.support.formula_dataset import (
    formula_layout_dir,
    formula_page,
    latex_model_dir,
    make_formula,
)

pytestmark = pytest.mark.functional

# The limit of the second stand-in's decoding loop (the real export's is 512 tokens).
SHORT_LIMIT = 8


@pytest.fixture(scope="module")
def formula_models(shared_cache_dir):
    root = shared_cache_dir / "models" / "formula"
    return {"rec": latex_model_dir(root), "short": latex_model_dir(root, max_len=SHORT_LIMIT),
            "layout": formula_layout_dir(root)}


@pytest.fixture(scope="module")
def formula_server(formula_models, shared_cache_dir, tmp_path_factory):
    specs = [pipeline_spec("formula_recognition", {"FormulaRecognition": formula_models["rec"]}),
             pipeline_spec("formula_recognition", {"FormulaRecognition": formula_models["short"],
                                                   "LayoutDetection": formula_models["layout"]},
                           {"use_layout_detection": False}, served_name="formula_short"),
             pipeline_spec("formula_recognition", {
                 "FormulaRecognition": formula_models["rec"],
                 "DocOrientationClassify": wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx",
                                                        shared_cache_dir / "models")},
                 served_name="formula_doc")]
    repo = tmp_path_factory.mktemp("formula") / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), specs)
    with TritonServer(repo, 0, 0, 0) as server:
        yield server, repo


def _in_process(model_dir):
    """The flow over Paddle Inference on the source model, in this process."""
    source = load_model_dir(model_dir)
    from hpi_triton.ensembles.formula import formula_settings

    settings = formula_settings(source)
    runner = reference_runner(source)
    decoder = formula_ops.LatexDecoder(settings.pop("tokenizer"))
    return formula_ops.FormulaFlow(
        {"formula": settings, "params": {}}, FunctionEngine(runner.run_list), decoder)


def test_served_formulas_equal_the_flow_on_paddle_inference(formula_server, formula_models):
    server, repo = formula_server
    client = Client(server.grpc_url, "grpc")
    flow = _in_process(formula_models["rec"])
    # in bounds, wider than max_dimensions (shrunk), and taller (cut to the ink)
    crops = [make_formula(i) for i in range(3)] + [make_formula(3, width=900)]
    tall = np.full((260, 300, 3), 250, np.uint8)
    tall[100:140, 20:280] = make_formula(4, width=260)[:40]
    for crop in crops + [tall]:
        served = client.predict("formula_recognition", crop)
        want, problem = flow.read(crop)
        assert problem is None and want
        assert served["formula_res_list"] == [{"rec_formula": want, "formula_region_id": 1}]
        assert served["model_settings"] == {"use_doc_preprocessor": False,
                                            "use_layout_detection": False}
    report = json.loads((repo / "build_report.json").read_text())
    entry = next(p for p in report["pipelines"] if p["served_name"] == "formula_recognition")
    assert entry["roles"]["FormulaRecognition"][0] == "formula_recognition_FormulaRecognition"
    assert "tokenizer.json" in {p.name for p in (repo / "formula_recognition" / "1").iterdir()}


def test_doc_preprocessor_turns_the_page_before_its_formula_is_read(formula_server,
                                                                    formula_models):
    """The real PP-LCNet doc orientation model finds a page turned by 180 degrees; the
    formula is then read from the page turned back (PaddleX's rotate_image)."""
    server, _ = formula_server
    client = Client(server.grpc_url, "grpc")
    page = np.full((300, 700, 3), 255, np.uint8)
    for row in range(5):
        page[30 + 50 * row:70 + 50 * row, 20:680] = make_formula(row, width=660)[:40]
    turned = np.ascontiguousarray(page[::-1, ::-1])
    out = client.predict("formula_doc", turned)
    assert out["model_settings"]["use_doc_preprocessor"] is True
    assert out["doc_preprocessor_res"]["angle"] == 180
    want, _ = _in_process(formula_models["rec"]).read(doc_ops.rotate_image(turned, 180))
    assert out["formula_res_list"][0]["rec_formula"] == want
    plain = client.predict("formula_doc", turned, use_doc_orientation_classify=False)
    assert "doc_preprocessor_res" not in plain


def test_bad_formula_inputs_are_client_errors_and_the_server_keeps_serving(formula_server):
    server, _ = formula_server
    client = Client(server.grpc_url, "grpc")
    # 32 px wide: the stand-in's loop emits [EOS] first, so the decode is empty
    dot = np.full((32, 32, 3), 255, np.uint8)
    dot[12:20, 12:20] = 0
    with pytest.raises(InvalidRequestError, match="LaTeX_OCR_rec: the image decodes to no "
                                                  "LaTeX.*crop of a formula"):
        client.predict("formula_recognition", dot)
    with pytest.raises(InvalidRequestError,
                       match=rf"reached the decoding limit \({SHORT_LIMIT} tokens\) before "
                             r"\[EOS\].*crop it to one formula"):
        client.predict("formula_short", make_formula(2))
    with pytest.raises(InvalidRequestError, match="unknown parameter 'text_det_thresh'"):
        client.predict("formula_recognition", make_formula(0), text_det_thresh=0.3)
    # with layout detection, such regions stay in the result (PaddleX's way) and are named
    out = client.predict("formula_short", formula_page(1), use_layout_detection=True)
    assert [r["formula_region_id"] for r in out["formula_res_list"]] == [1]
    assert len(out["warnings"]) == 1 and "formula region 1" in out["warnings"][0] \
        and "decoding limit" in out["warnings"][0]
    assert [b["label"] for b in out["layout_det_res"]["boxes"]].count("formula") == 1
    ok = client.predict("formula_recognition", make_formula(1))
    assert ok["formula_res_list"][0]["rec_formula"]
    assert server.is_ready()


def test_engines_that_cannot_carry_the_decoding_loop_fall_back_to_paddle_infer(
        formula_models, shared_cache_dir, tmp_path):
    """Measured, not assumed: paddle2onnx writes the loop as an ONNX Loop that OpenVINO
    refuses and ONNX Runtime runs to different tokens; the build says so and serves
    paddle_infer."""
    # An explicit --backend fails alone; listed, the fallbacks are tried in order.
    spec = pipeline_spec("formula_recognition", {"FormulaRecognition": formula_models["rec"]},
                         backends={"FormulaRecognition": "openvino,onnx_runtime,paddle_infer"})
    build_repository([], BuildOptions(out=tmp_path / "repo", cache_dir=shared_cache_dir),
                     [spec])
    report = json.loads((tmp_path / "repo" / "build_report.json").read_text())
    model = report["models"][0]
    statuses = {c["backend"]: c["status"] for c in model["candidates"]}
    assert model["backend"] == "paddle_infer" and "fallback" in model["selection"]
    assert statuses["openvino"] == "failed" and statuses["onnx_runtime"] == "failed"
    assert statuses["paddle_infer"] == "verified"
    onnx = next(c for c in model["candidates"] if c["backend"] == "onnx_runtime")
    assert "differs from Paddle Inference" in onnx["reason"]
    report_md = (tmp_path / "repo" / "REPORT.md").read_text()
    assert "openvino failed for model 'formula_recognition_FormulaRecognition'" in report_md
    assert "decoding loop is inside the engine" in report_md


def test_model_dir_without_tokenizer_fails_the_build_before_converting(formula_models,
                                                                       tmp_path):
    broken = tmp_path / "LaTeX_OCR_rec_no_tokenizer"
    shutil.copytree(formula_models["rec"], broken)
    config = yaml.safe_load((broken / "inference.yml").read_text())
    del config["PostProcess"]["character_dict"]
    (broken / "inference.yml").write_text(yaml.safe_dump(config))
    out = tmp_path / "repo"
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "build", "--pipeline",
                           "formula_recognition", "--model", f"FormulaRecognition={broken}",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "PostProcess.character_dict' is missing; LaTeX_OCR_rec needs its tokenizer" in \
        proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".repo.building-*"))


def test_paddlex_formula_yaml_builds_from_the_command_line(formula_models, shared_cache_dir,
                                                           tmp_path):
    """PaddleX's formula_recognition.yaml form (its LayoutDetection keys included), model
    dirs filled in: built by `hpi-triton build --pipeline-config`, the layout keys served
    layout detection does not apply named in REPORT.md, tokenizers in requirements.txt."""
    config = {"pipeline_name": "formula_recognition", "use_layout_detection": True,
              "use_doc_preprocessor": False,
              "SubModules": {
                  "LayoutDetection": {"module_name": "layout_detection",
                                      "model_name": "PP-DocLayout_plus-L",
                                      "model_dir": str(formula_models["layout"]),
                                      "threshold": 0.4, "layout_nms": True,
                                      "layout_unclip_ratio": 1.0,
                                      "layout_merge_bboxes_mode": "large", "batch_size": 1},
                  "FormulaRecognition": {"module_name": "formula_recognition",
                                         "model_name": "LaTeX_OCR_rec",
                                         "model_dir": str(formula_models["rec"]),
                                         "batch_size": 5}}}
    path = tmp_path / "formula_recognition.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "repo"
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "build", "--pipeline-config",
                           str(path), "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ,
                                            "HPI_TRITON_CACHE_DIR": str(shared_cache_dir)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "build_report.json").read_text())
    (entry,) = report["pipelines"]
    assert entry["params"]["use_layout_detection"] is True
    assert entry["params"]["layout_threshold"] == 0.4
    assert entry["not_applied"] == {"layout_nms": True, "layout_unclip_ratio": 1.0,
                                    "layout_merge_bboxes_mode": "large"}
    assert "not applied by the served layout step: `layout_nms: True`" in \
        (out / "REPORT.md").read_text()
    assert any(line.startswith("tokenizers==")
               for line in (out / "requirements.txt").read_text().splitlines())
