"""The int8 gate's measures and the layout candidates, and what both refuse before a build."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hpi_triton.ensembles import pipeline_spec
from hpi_triton.errors import BuildError
from hpi_triton.pages import Page
from hpi_triton.transforms.layout import LayoutTransform, layouts
from hpi_triton.transforms.quantize import QuantizeTransform, accuracy, calibration_images
from hpi_triton.triton_models.backends import Device


def _result(texts, boxes):
    return {"rec_texts": texts,
            "dt_polys": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, y0, x1, y1 in boxes]}


PAGE = Page(np.zeros((4, 4, 3), np.uint8), ["Invoice 2026", "Total 12.50"], "p")
BOXES = [(10, 10, 200, 40), (10, 60, 180, 90)]


def test_identical_reading_has_no_delta():
    ref = _result(PAGE.lines, BOXES)
    measured = accuracy([ref], [ref], [PAGE])
    assert measured["cer_delta"] == 0 and measured["cer_vs_fp32"] == 0
    assert measured["line_recall"] == 1 and measured["box_delta_px"] == {"mean": 0, "max": 0}


def test_lost_line_and_shifted_box_are_measured():
    ref = _result(PAGE.lines, BOXES)
    lost = _result(["Invoice 2026"], [(13, 10, 200, 44)])
    measured = accuracy([ref], [lost], [PAGE])
    assert measured["line_recall"] == 0.5
    assert measured["box_delta_px"]["max"] == 4
    # "Total12.50" (10 characters without spaces) missing of 21: points of CER
    assert measured["cer_delta"] == pytest.approx(10 / 21 * 100, abs=0.01)
    assert measured["cer_vs_fp32"] == measured["cer_delta"]


def test_better_reading_has_negative_delta():
    wrong = _result(["Invoice 2O26", "Total 12.50"], BOXES)
    right = _result(PAGE.lines, BOXES)
    measured = accuracy([wrong], [right], [PAGE])
    assert measured["cer_delta"] < 0 < measured["cer_vs_fp32"]


def test_merged_words_cost_nothing_in_cer_but_count_with_spaces_and_in_word_f1():
    merged = _result(["Invoice2026", "Total 12.50"], BOXES)
    measured = accuracy([_result(PAGE.lines, BOXES)], [merged], [PAGE])
    assert measured["cer_delta"] == 0
    # "Invoice 2026 Total 12.50": one space missing of 24 characters
    assert measured["cer_spaces"] == pytest.approx(1 / 24 * 100, abs=0.001)
    # 2 of 3 words read right, 4 in the truth: P 2/3, R 1/2
    assert measured["word_f1"] == pytest.approx(4 / 7, abs=1e-4)
    assert measured["word_f1_delta"] == pytest.approx(4 / 7 - 1, abs=1e-4)


def test_word_f1_ignores_reading_order_and_collapses_whitespace():
    from hpi_triton import pages

    truth = [["alpha beta", "gamma"]]
    assert pages.word_f1([["gamma  ", "alpha\tbeta"]], truth) == 1.0
    assert pages.cer_with_spaces([["alpha   beta", "gamma"]], truth) == 0
    assert pages.word_f1([[]], truth) == 0.0
    assert pages.scores([["alphabeta gamma"]], truth) == {
        "cer": 0.0, "cer_spaces": round(100 / 16, 3), "word_f1": 0.4}


def test_real_pdf_pages_carry_their_text_layer(tmp_path):
    import gzip

    import pypdfium2

    from hpi_triton import pages

    document = pypdfium2.PdfDocument.new()
    document.new_page(200, 100)
    path = tmp_path / "blank.pdf.gz"
    buffer = tmp_path / "blank.pdf"
    document.save(str(buffer))
    path.write_bytes(gzip.compress(buffer.read_bytes()))
    assert pages.document_pages(path, 2) == []  # no text layer: skipped, not an empty truth


def test_layouts_use_every_core_once():
    assert layouts(1) == [(1, 1)]
    assert layouts(2) == [(1, 2), (2, 1)]
    assert layouts(6) == [(1, 6), (2, 3), (3, 2), (6, 1)]


def _options(**kw):
    return SimpleNamespace(**{"precision": "fp32", "device": Device(), "hosting": "python",
                              "cache_dir": None, "use_cache": True, **kw})


OCR_PIPELINE = pipeline_spec("OCR", {"TextDetection": Path("d"), "TextRecognition": Path("r")})


def test_quantize_refuses_what_it_cannot_gate(tmp_path):
    with pytest.raises(BuildError, match="TextDetection and TextRecognition"):
        QuantizeTransform().check([], [pipeline_spec(
            "image_classification", {"ImageClassification": Path("x")})], _options())
    with pytest.raises(BuildError, match="--precision fp32"):
        QuantizeTransform().check([], [OCR_PIPELINE], _options(precision="bf16"))
    with pytest.raises(BuildError, match="--hosting auto, graph or python"):
        QuantizeTransform().check([], [OCR_PIPELINE], _options(hosting="native"))
    with pytest.raises(BuildError, match="no images"):
        QuantizeTransform(calibration=tmp_path).check([], [OCR_PIPELINE], _options())
    with pytest.raises(BuildError, match="not a folder"):
        QuantizeTransform(calibration=tmp_path / "missing").check([], [OCR_PIPELINE],
                                                                  _options())
    with pytest.raises(BuildError, match="--max-cer-delta"):
        QuantizeTransform(max_cer_delta=-0.5).check([], [OCR_PIPELINE], _options())
    QuantizeTransform().check([], [OCR_PIPELINE], _options())  # accepted


def test_calibration_folder_lists_images_only(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in calibration_images(tmp_path)] == ["a.JPG", "b.png"]


def test_layout_refuses_what_it_cannot_measure():
    with pytest.raises(BuildError, match="--pipeline"):
        LayoutTransform(4).check(["m"], [], _options())
    with pytest.raises(BuildError, match="CPU layouts"):
        LayoutTransform(4).check([], [OCR_PIPELINE], _options(device=Device.parse("gpu")))
    with pytest.raises(BuildError, match="1 or more"):
        LayoutTransform(0).check([], [OCR_PIPELINE], _options())


def test_fast_refuses_a_pipeline_without_text(tmp_path):
    from typer.testing import CliRunner

    from hpi_triton.cli import app

    result = CliRunner().invoke(app, ["build", "--pipeline", "object_detection", "--model",
                                      f"ObjectDetection={tmp_path}", "--out",
                                      str(tmp_path / "repo"), "--fast"])
    assert result.exit_code == 2
    assert "--fast applies to pipelines that read general text" in result.output
    assert not (tmp_path / "repo").exists()


def test_seal_only_builds_are_refused_and_calibration_is_spread(tmp_path):
    from hpi_triton.transforms.quantize import _spread

    seal = pipeline_spec("seal_recognition", OCR_PIPELINE.roles)
    assert OCR_PIPELINE.reads_general_text and not seal.reads_general_text
    with pytest.raises(BuildError, match="seal text stays fp32"):
        QuantizeTransform().check([], [seal], _options())
    paths = [tmp_path / f"{i:03d}.png" for i in range(100)]
    picked = _spread(paths, 32)
    assert len(picked) == 32 and picked[0] == paths[0] and len(set(picked)) == 32
    assert _spread(paths[:5], 32) == paths[:5]


def test_layout_refuses_native_hosting():
    with pytest.raises(BuildError, match="--hosting native"):
        LayoutTransform(4).check([], [OCR_PIPELINE], _options(hosting="native"))


def test_gate_candidates_say_what_they_change(monkeypatch):
    from hpi_triton.transforms import quantize

    assert quantize.describe({"int8": ["TextRecognition"], "precision": "fp32"}) == \
        "int8 TextRecognition"
    assert quantize.describe({"int8": ["TextDetection", "TextRecognition"],
                              "precision": "bf16"}) == "int8 TextDetection + TextRecognition, bf16"
    assert quantize.describe({"int8": [], "precision": "bf16"}) == "bf16"
    # bf16 is measured only where the CPU computes it natively
    monkeypatch.setattr(quantize, "device_architecture", lambda kind: "cpu:x flags avx2 fma")
    assert quantize.float_precisions() == ["fp32"]
    monkeypatch.setattr(quantize, "device_architecture", lambda kind: "cpu:x avx512f avx512_bf16")
    assert quantize.float_precisions() == ["fp32", "bf16"]


def test_the_gate_keeps_the_first_candidate_within_noise_of_the_fastest():
    from hpi_triton.transforms.quantize import steadiest_fastest

    kept = [{"name": "int8 det + rec, fp32", "img_s": 3.9}, {"name": "bf16", "img_s": 3.0},
            {"name": "int8 rec, bf16", "img_s": 4.07}]
    assert steadiest_fastest(kept)["name"] == "int8 det + rec, fp32"  # 3.9 >= 0.95 x 4.07
    kept[0]["img_s"] = 3.8
    assert steadiest_fastest(kept)["name"] == "int8 rec, bf16"
