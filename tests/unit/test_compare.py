"""hpi-triton compare without PaddleX: the PaddleX config rebuilt from a build report, and the
field-by-field differences."""

from __future__ import annotations

import numpy as np
import pytest

from hpi_triton.compare import ComparisonError, run_paddlex, summary
from hpi_triton.compare.diff import compare_results, ocr_line_stats
from hpi_triton.compare.paddlex_config import UnsupportedComparison, paddlex_job

REPORT = {
    "models": [{"name": "OCR_TextDetection", "source": "/m/det", "model_name": "PP-OCRv4_det"},
               {"name": "OCR_TextRecognition", "source": "/m/rec",
                "model_name": "PP-OCRv4_rec"}],
    "pipelines": [{"pipeline": "OCR", "served_name": "OCR", "text_rec_batch_size": 6,
                   "roles": {"TextDetection": ["OCR_TextDetection", "x", "y"],
                             "TextRecognition": ["OCR_TextRecognition", "x", "y"]},
                   "params": {"limit_side_len": 64, "limit_type": "min", "thresh": 0.3,
                              "text_rec_score_thresh": 0.0, "use_textline_orientation": True,
                              "use_doc_preprocessor": False}}],
}


def test_paddlex_job_reproduces_the_build():
    job = paddlex_job(REPORT, "OCR", ["/a.png"], {"text_det_thresh": "0.4"})
    config = job["config"]
    det, rec = config["SubModules"]["TextDetection"], config["SubModules"]["TextRecognition"]
    assert det["model_dir"] == "/m/det" and det["model_name"] == "PP-OCRv4_det"
    assert det["limit_side_len"] == 64 and det["thresh"] == 0.3
    assert rec["batch_size"] == 6 and rec["score_thresh"] == 0.0
    # no orientation or doc models were built: PaddleX must not load (download) its own
    assert config["use_textline_orientation"] is False
    assert config["use_doc_preprocessor"] is False and "SubPipelines" not in config
    assert job["predict"] == {"text_det_thresh": 0.4} and job["inputs"] == ["/a.png"]
    with pytest.raises(UnsupportedComparison, match="text_rec_batching"):
        paddlex_job(REPORT, "OCR", [], {"text_rec_batching": "width_buckets"})
    with pytest.raises(UnsupportedComparison, match="serves \\['OCR'\\]"):
        paddlex_job(REPORT, "table", [], {})


def test_differences_field_by_field():
    served = {"rec_texts": ["Total summary", "b"], "rec_scores": [0.9, 0.80001],
              "rec_polys": np.array([[[0, 0], [1, 0], [1, 1], [0, 1]]] * 2),
              "input_path": "x", "extra": 1}
    paddlex = {"rec_texts": ["Totalsummary", "b"], "rec_scores": [0.9, 0.8],
               "rec_polys": [[[0, 0], [1, 0], [1, 1], [0, 1]]] * 2, "input_path": "y"}
    found = compare_results(served, paddlex, tolerance=1e-3)
    assert [d.field for d in found] == ["rec_texts[0]"]
    assert "'Total summary'" in str(found[0]) and "'Totalsummary'" in str(found[0])
    strict = compare_results(served, paddlex, tolerance=1e-6)
    assert [d.field for d in strict] == ["rec_scores[1]", "rec_texts[0]"]
    shorter = compare_results({"rec_texts": ["a"]}, {"rec_texts": ["a", "b"]})
    assert [d.field for d in shorter] == ["rec_texts (length)"]
    assert ocr_line_stats([(served, paddlex)]) == (1, 2, 2)
    assert ocr_line_stats([({"class_ids": [1]}, {"class_ids": [1]})]) is None


def test_summary_and_missing_paddlex(tmp_path):
    from hpi_triton.compare import ImageComparison

    line = summary([ImageComparison("a", None), ImageComparison("b", None, error="x")])
    assert line == "1/2 inputs identical to PaddleX, 1 not compared"
    with pytest.raises(ComparisonError, match="does not exist"):
        run_paddlex(str(tmp_path / "no-python"), {"config": {}, "inputs": []})
    import sys

    with pytest.raises(ComparisonError, match="No module named 'paddlex'"):
        run_paddlex(sys.executable, {"config": {}, "inputs": []}, timeout=60)
