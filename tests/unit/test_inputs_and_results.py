"""Inputs of predict_many (paths, folders, globs, bytes, arrays, PDFs), drawn results and saved
JSON, and one-line log messages: no server needed."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hpi_triton.errors import InputError
from hpi_triton.inputs import expand
from hpi_triton.logs import one_line
from hpi_triton.results import Prediction
from hpi_triton.visualize import draw_result


def _png(path, value=128, size=(40, 30)):
    Image.new("RGB", size, (value, value, value)).save(path)


def _pdf(path, pages):
    images = [Image.new("RGB", (144, 72 * (i + 1)), "white") for i in range(pages)]
    images[0].save(path, "PDF", resolution=72, save_all=True, append_images=images[1:])


def test_expand_folders_globs_pdfs_in_order(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("skipped")
    _pdf(tmp_path / "c.pdf", 3)
    items = expand([tmp_path, str(tmp_path / "*.png"), b"\x89PNG", np.zeros((4, 4, 3),
                                                                             np.uint8)])
    labels = [(i.label.rsplit("/", 1)[-1], i.page_index) for i in items]
    assert labels == [("a.jpg", None), ("b.png", None), ("c.pdf", 0), ("c.pdf", 1),
                      ("c.pdf", 2), ("b.png", None), ("bytes[4]", None),
                      ("array[4x4x3]", None)]
    assert [i.index for i in items] == list(range(8))
    # PDF pages render at the DPI asked: a 144x72 pt page at 144 DPI is 288x144 px, BGR.
    page = expand(tmp_path / "c.pdf", dpi=144)[1].load()
    assert page.shape == (288, 288, 3) and page.dtype == np.uint8
    assert [i.stem for i in items[2:4]] == ["c_0", "c_1"]


def test_expand_refuses_inputs_one_by_one(tmp_path):
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.7 nothing else")
    (tmp_path / "empty").mkdir()
    items = expand([tmp_path / "missing.png", tmp_path / "broken.pdf", tmp_path / "empty",
                    str(tmp_path / "*.tif")])
    assert [i.load for i in items] == [None] * 4
    messages = [str(i.error) for i in items]
    assert "does not exist" in messages[0] and "broken.pdf" in messages[1]
    assert "holds no image or PDF" in messages[2] and "matches no image" in messages[3]
    with pytest.raises(InputError, match="dpi=0"):
        expand(tmp_path, dpi=0)
    with pytest.raises(InputError, match="expected a path"):
        expand([3.5])


def _prediction(result, image_bytes):
    (item,) = expand(image_bytes)
    return Prediction(0, item.label, None, "p", result=result, item=item)


def _encoded(rgb):
    import io

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


RESULTS = {
    "ocr": {"rec_polys": [[[5, 5], [60, 5], [60, 20], [5, 20]]], "rec_texts": ["hello"],
            "rec_scores": [0.9]},
    "detection": {"boxes": [{"cls_id": 1, "label": "table", "score": 0.8,
                             "coordinate": [10, 10, 50, 40]}]},
    "classification": {"class_ids": [3], "scores": [0.7], "label_names": ["cat"]},
    "segmentation": {"pred": np.tile(np.arange(80, dtype=np.uint8) % 3, (60, 1))},
    "instances": {"boxes": [{"cls_id": 0, "label": "a", "score": 0.9,
                             "coordinate": [5, 5, 30, 30]}],
                  "masks": np.pad(np.ones((1, 20, 20), np.uint8), ((0, 0), (5, 35), (5, 55)))},
    "table": {"overall_ocr_res": {"rec_polys": [], "rec_texts": []},
              "table_res_list": [{"cell_box_list": [[2, 2, 40, 20], [40, 2, 78, 20]]}]},
    "seal": {"layout_det_res": {"boxes": [{"label": "seal", "cls_id": 0, "score": 0.9,
                                           "coordinate": [20, 10, 70, 50]}]},
             "seal_res_list": [{"seal_region_id": 1, "rec_texts": ["SEAL"],
                                "rec_polys": [[[1, 1], [30, 1], [30, 12], [1, 12]]]}]},
    "layout": {"parsing_res_list": [{"block_label": "text", "block_bbox": [4, 4, 70, 30]}]},
}


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_every_result_kind_is_drawn(kind):
    rgb = np.full((60, 80, 3), 200, np.uint8)
    drawn = draw_result(rgb, RESULTS[kind])
    assert drawn.dtype == np.uint8 and drawn.shape[0] == 60 and drawn.shape[1] in (80, 160)
    assert np.any(drawn[:, :80] != rgb)  # something drawn on the page itself


def test_doc_preprocessor_result_shows_the_corrected_page():
    rgb = np.zeros((30, 40, 3), np.uint8)
    corrected = np.frombuffer(_encoded(np.full((30, 40, 3), 255, np.uint8)), np.uint8)
    drawn = draw_result(rgb, {"angle": 180, "output_img": corrected})
    assert drawn.shape == (30, 80, 3) and drawn[:, 40:].min() == 255


def test_save_to_json_and_img_are_paddlex_shaped(tmp_path):
    rgb = np.full((60, 80, 3), 220, np.uint8)
    result = {**RESULTS["segmentation"], "note": "x"}
    prediction = _prediction(result, _encoded(rgb))
    saved = json.loads(prediction.save_to_json(tmp_path).read_text())
    assert saved["res"]["input_path"] == prediction.input_path
    assert saved["res"]["page_index"] is None and saved["res"]["note"] == "x"
    assert np.array_equal(np.load(saved["res"]["pred"]), result["pred"])
    picture = prediction.save_to_img(tmp_path)
    assert Image.open(picture).size == (80, 60)
    assert not list(tmp_path.glob(".*partial"))  # nothing half-written left
    failed = Prediction(1, "x.png", None, "p", error=InputError("x.png does not exist"))
    with pytest.raises(InputError):
        failed.save_to_json(tmp_path)


def test_one_line_keeps_the_cause_and_points_to_the_log():
    message = ("paddle2onnx on /m/inference.pdmodel failed:\n"
               "    2026-12-02 00:01:51 [ERROR]\tFailed to convert: (Unimplemented) op\n"
               "    I1202 00:01:50 program_interpreter.cc:257] New Executor is Running.")
    line = one_line(message)
    assert "\n" not in line
    assert line.startswith("paddle2onnx on /m/inference.pdmodel failed: Failed to convert")
    assert line.endswith("(full reason in build.log)")
    assert one_line("plain warning") == "plain warning"
    assert len(one_line("x" * 1000)) < 260
