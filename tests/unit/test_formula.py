"""formula_recognition pieces without a server: LaTeX_OCR_rec's pre-processing and decoding,
the build-time checks of its model dir, the flow's errors, and the pipeline's parameters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from hpi_triton.core.model_dir import ModelSource, TensorSpec
from hpi_triton.ensembles import load_pipeline_config, pipeline_spec
from hpi_triton.ensembles.formula import formula_settings
from hpi_triton.errors import BuildError, InferenceConfigError
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.common.parameters import ParameterError
from hpi_triton.python_backend.documents import formula_ops
from tests.support.formula_dataset import PREPROCESS, latex_tokenizer, make_formula

PARAMS = {"use_layout_detection": False, "layout_threshold": 0.5,
          "use_doc_orientation_classify": False, "use_doc_unwarping": False,
          "use_doc_preprocessor": False, "max_pixels": 10 ** 8}


@pytest.fixture(scope="module")
def tokenizer():
    return json.dumps(latex_tokenizer())


def _source(tmp_path, config, inputs=None, outputs=None) -> ModelSource:
    (tmp_path / "inference.yml").write_text(yaml.safe_dump(config))
    return ModelSource(path=tmp_path, model_name=config["Global"]["model_name"], format="pir",
                       inputs=inputs or [TensorSpec("x", "float32", (-1, 1, -1, -1))],
                       outputs=outputs or [TensorSpec("out", "int64", (-1, -1))],
                       config=config)


def _config(tokenizer, **post):
    return {"Global": {"model_name": "LaTeX_OCR_rec"}, "PreProcess": {"transform_ops": PREPROCESS},
            "PostProcess": {"name": "LaTeXOCRDecode", "character_dict": json.loads(tokenizer),
                            **post}}


def test_crop_within_bounds_is_only_grayed_normalized_and_padded():
    crop = np.zeros((40, 100, 3), np.uint8)
    crop[..., 2] = 255  # pure red in BGR
    x = formula_ops.preprocess(crop, PREPROCESS)
    assert x.shape == (1, 1, 48, 112) and x.dtype == np.float32
    # PaddleX reads RGB, then converts "BGR" to gray: red gets blue's weight (0.114).
    gray = round(0.114 * 255)
    assert x[0, 0, 0, 0] == pytest.approx((gray / 255 - 0.7931) / 0.1738, abs=0.01)
    assert np.all(x[0, 0, 40:, :] == 1.0) and np.all(x[0, 0, :, 100:] == 1.0)


def test_oversized_crop_is_cut_to_its_ink_and_shrunk_into_max_dimensions():
    page = np.full((400, 1500, 3), 255, np.uint8)
    page[100:160, 200:1400] = 0  # the "ink": 1200 x 60
    x = formula_ops.preprocess(page, PREPROCESS)
    _, _, h, w = x.shape
    assert w <= 672 and h <= 192 and w % 16 == 0 and h % 16 == 0
    # cropped to the ink (padded to 32s: 1216 x 64), then shrunk by 1216/672
    assert w == 672 and h == 48


def test_flat_or_unshrinkable_crops_are_client_errors():
    with pytest.raises(formula_ops.FormulaInputError, match="flat colour"):
        formula_ops.preprocess(np.full((20, 800, 3), 200, np.uint8), PREPROCESS)
    # a black bar the whole width: shrunk and padded, PaddleX's paste at the ink's bbox no
    # longer fits (Pillow's "images do not match", PaddleX fails the same way)
    bar = np.full((40, 2016, 3), 255, np.uint8)
    bar[:8] = 0
    with pytest.raises(formula_ops.FormulaInputError, match="2016x40 px.*cannot be resized"):
        formula_ops.preprocess(bar, PREPROCESS)


def test_decoder_round_trips_latex_with_paddlex_spacing_rules(tokenizer):
    decoder = formula_ops.LatexDecoder(tokenizer)
    for latex, want in ((r"\frac{a}{b}", r"\frac{a}{b}"), (r"x^{2} + y", "x^{2}+y"),
                        (r"\text {speed} = \frac {d}{t}", r"\text{speed}=\frac{d}{t}")):
        ids = [1, *decoder.tokenizer.encode(latex).ids, decoder.eos]
        assert decoder.decode(np.array(ids)) == want
    assert decoder.post_process(r"\alpha \beta + x") == r"\alpha\beta+x"


def _flow(tokenizer, tokens, layout=None):
    settings = {"formula": {"model_name": "LaTeX_OCR_rec", "preprocess": PREPROCESS},
                "params": dict(PARAMS)}
    if layout is not None:
        settings["layout"] = layout
    return formula_ops.FormulaFlow(
        settings, FunctionEngine(lambda x: [np.array([tokens], np.int64)]),
        formula_ops.LatexDecoder(tokenizer))


def test_decode_to_nothing_or_to_the_limit_is_a_client_error_naming_the_model(tokenizer):
    image = make_formula(0)
    with pytest.raises(formula_ops.FormulaInputError, match="LaTeX_OCR_rec.*no LaTeX"):
        _flow(tokenizer, [2]).run(image, dict(PARAMS))
    with pytest.raises(formula_ops.FormulaInputError, match=r"decoding limit \(6 tokens\)"):
        _flow(tokenizer, [5, 6, 7, 8, 9, 10]).run(image, dict(PARAMS))
    # tokens after the first [EOS] (a batch's finished row) are not part of the formula
    x_id = formula_ops.LatexDecoder(tokenizer).tokenizer.token_to_id("x")
    out = _flow(tokenizer, [x_id, 2, x_id, x_id]).run(image, dict(PARAMS))
    assert out["formula_res_list"] == [{"rec_formula": "x", "formula_region_id": 1}]


def test_doc_switches_named_in_a_request_decide_as_in_paddlex(tokenizer):
    """PaddleX's get_model_settings: naming a doc switch runs the doc_preprocessor only if a
    named one is True; naming none leaves the build's use_doc_preprocessor."""
    flow = _flow(tokenizer, [2])
    flow.settings.params = {**PARAMS, "use_doc_preprocessor": True,
                               "use_doc_orientation_classify": True, "use_doc_unwarping": True}
    flow.doc = type("Doc", (), {"check": lambda self, params: None})()
    assert flow.parameters({})["use_doc_preprocessor"] is True
    assert flow.parameters({"use_doc_unwarping": "false"})["use_doc_preprocessor"] is False
    named = flow.parameters({"use_doc_unwarping": False, "use_doc_orientation_classify": True})
    assert named["use_doc_preprocessor"] is True and named["use_doc_unwarping"] is False


def test_parameters_refuse_steps_whose_models_were_not_built(tokenizer):
    flow = _flow(tokenizer, [2])
    with pytest.raises(ParameterError, match="LayoutDetection"):
        flow.parameters({"use_layout_detection": "true"})
    with pytest.raises(ParameterError, match="DocOrientationClassify"):
        flow.parameters({"use_doc_orientation_classify": True})
    with pytest.raises(ParameterError, match="unknown parameter 'text_det_thresh'"):
        flow.parameters({"text_det_thresh": 0.3})


def test_model_dir_checks_name_the_field_and_the_fix(tmp_path, tokenizer):
    settings = formula_settings(_source(tmp_path, _config(tokenizer)))
    assert settings["model_name"] == "LaTeX_OCR_rec" and json.loads(settings["tokenizer"])
    no_tokenizer = _config(tokenizer)
    del no_tokenizer["PostProcess"]["character_dict"]
    with pytest.raises(InferenceConfigError,
                       match="PostProcess.character_dict' is missing; LaTeX_OCR_rec needs its "
                             "tokenizer.*export the model again"):
        formula_settings(_source(tmp_path, no_tokenizer))
    with pytest.raises(InferenceConfigError, match="not a tokenizer"):
        formula_settings(_source(tmp_path, _config(tokenizer, character_dict={"a": 1})))
    other = _config(tokenizer)
    other["Global"]["model_name"] = "PP-FormulaNet-S"
    with pytest.raises(InferenceConfigError, match="serves \\['LaTeX_OCR_rec'\\]"):
        formula_settings(_source(tmp_path, other))
    with pytest.raises(InferenceConfigError, match=r"x \[N,1,H,W\] float32"):
        formula_settings(_source(tmp_path, _config(tokenizer),
                                 outputs=[TensorSpec("logits", "float32", (-1, -1, 320))]))


def test_pipeline_parameters_and_paddlex_yaml(tmp_path):
    roles = {"FormulaRecognition": tmp_path}
    with pytest.raises(BuildError, match="use_layout_detection=True needs --model "
                                         "LayoutDetection"):
        pipeline_spec("formula_recognition", roles, {"use_layout_detection": True})
    with pytest.raises(BuildError, match="FormulaRecognition \\(required\\)"):
        pipeline_spec("formula_recognition", {"LayoutDetection": tmp_path})
    with pytest.raises(BuildError, match="unknown parameters \\['text_det_thresh'\\]"):
        pipeline_spec("formula_recognition", roles, {"text_det_thresh": 0.3})
    with pytest.raises(BuildError, match="use_doc_preprocessor=True needs --model "
                                         "DocOrientationClassify"):
        pipeline_spec("formula_recognition", roles, {"use_doc_preprocessor": "true"})
    assert pipeline_spec("formula_recognition", roles).params["use_doc_preprocessor"] is False
    # layout_parsing: a --param string "false" turns formula recognition off
    parsing = {"LayoutDetection": tmp_path, "TextDetection": tmp_path,
               "TextRecognition": tmp_path, "FormulaRecognition": tmp_path}
    assert pipeline_spec("layout_parsing", parsing).params["use_formula_recognition"] is True
    assert pipeline_spec("layout_parsing", parsing, {"use_formula_recognition": "false"}
                         ).params["use_formula_recognition"] is False
    with pytest.raises(BuildError, match="use_formula_recognition=True needs --model "
                                         "FormulaRecognition"):
        pipeline_spec("layout_parsing", {k: v for k, v in parsing.items()
                                         if k != "FormulaRecognition"},
                      {"use_formula_recognition": "true"})
    # PaddleX's own formula_recognition.yaml form (its layout keys accepted, not applied)
    config = {"pipeline_name": "formula_recognition", "use_layout_detection": True,
              "use_doc_preprocessor": False,  # PaddleX's YAML says True, with its doc models
              "SubModules": {
                  "LayoutDetection": {"module_name": "layout_detection",
                                      "model_name": "PP-DocLayout_plus-L", "model_dir": "lay",
                                      "threshold": 0.4, "layout_nms": True,
                                      "layout_unclip_ratio": 1.0,
                                      "layout_merge_bboxes_mode": "large", "batch_size": 1},
                  "FormulaRecognition": {"module_name": "formula_recognition",
                                         "model_name": "LaTeX_OCR_rec", "model_dir": "rec",
                                         "batch_size": 5}}}
    path = tmp_path / "formula_recognition.yaml"
    path.write_text(yaml.safe_dump(config))
    spec = load_pipeline_config(path)
    assert spec.params["use_layout_detection"] is True
    assert spec.params["layout_threshold"] == 0.4
    assert spec.not_applied == {"layout_nms": True, "layout_unclip_ratio": 1.0,
                                "layout_merge_bboxes_mode": "large"}
    assert spec.roles["FormulaRecognition"] == tmp_path / "rec"
