"""PaddleX's vision serving endpoints (``/image-classification``, ``/object-detection``,
``/semantic-segmentation``, ``/instance-segmentation``) and ``/document-preprocessing`` over
the served graphs: classification against PaddleX 3.7.2's own pipeline on the same model
dir (MobileNetV3, random weights: plumbing and parity, not accuracy); detection with a
PicoDet-signature stand-in (fixed regions) against PaddleX's own endpoint."""

from __future__ import annotations

import base64
import subprocess
import sys

import cv2
import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton import wheel_models as wm
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.server import TritonServer, free_port
from tests.support.families import scene
from tests.support.ocr_dataset import make_pages
from tests.support.paddlex_serving import b64, post, wait_healthy

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def vision_repo(pir_model, segmentation_model, wheel_models, shared_cache_dir,
                tmp_path_factory):
    repo = tmp_path_factory.mktemp("api-vision") / "repo"
    from tests.support.families import family_model_dirs, layout_model_dir, uvdoc_model_dir
    from tests.support.formula_dataset import latex_model_dir

    families = family_model_dirs(shared_cache_dir / "models" / "families")
    specs = [pipeline_spec("image_classification", {"ImageClassification": pir_model}),
             pipeline_spec("object_detection", {"ObjectDetection": layout_model_dir(
                 shared_cache_dir / "models")}),
             pipeline_spec("semantic_segmentation",
                           {"SemanticSegmentation": segmentation_model}),
             pipeline_spec("instance_segmentation",
                           {"InstanceSegmentation": families["Mask-RT-DETR"]}),
             pipeline_spec("doc_preprocessor", {
                 "DocOrientationClassify": wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx",
                                                        shared_cache_dir / "models"),
                 "DocUnwarping": uvdoc_model_dir(shared_cache_dir / "models")}),
             pipeline_spec("table_recognition", {
                 "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
                 "TableStructureRecognition": wm.model_dir("SLANet_plus_onnx",
                                                           shared_cache_dir / "models")}),
             pipeline_spec("layout_parsing", {
                 "TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
                 "LayoutDetection": layout_model_dir(shared_cache_dir / "models"),
                 "TableStructureRecognition": wm.model_dir("SLANet_plus_onnx",
                                                           shared_cache_dir / "models")}),
             pipeline_spec("formula_recognition", {"FormulaRecognition": latex_model_dir(
                 shared_cache_dir / "models" / "formula")}),
             pipeline_spec("seal_recognition", {
                 "TextDetection": wm.model_dir("PP-OCRv4_mobile_seal_det_onnx",
                                               shared_cache_dir / "models"),
                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]})]
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), specs)
    return repo


@pytest.fixture(scope="module")
def api(vision_repo):
    """tritonserver + ``hpi-triton api`` alone in front of it: (API URL, gRPC URL)."""
    with TritonServer(vision_repo, 0, 0, 0) as server:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "hpi_triton.cli", "api", "--triton-url", server.grpc_url,
             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, process, timeout=60)
            yield url, server.grpc_url
        finally:
            process.terminate()
            process.wait(30)


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", scene(seed=seed))[1].tobytes()


def test_image_classification_answers_as_paddlex(api, vision_repo, paddlex_python, tmp_path):
    """PaddleX 3.7.2's own ``/image-classification`` answers 500 to every request (its app
    zips a batch's class-id array per result: pydantic refuses ``categories.0.id``), so the
    categories are compared with what its pipeline's predict() gives on the same files, which
    that endpoint means to return (``id``, ``name``, ``score`` from ``class_ids``,
    ``label_names``, ``scores``)."""
    import json

    from hpi_triton.compare import run_paddlex
    from hpi_triton.compare.paddlex_config import paddlex_job

    url, _ = api
    images = [_png(1), _png(2)]
    report = json.loads((vision_repo / "build_report.json").read_text())
    for index, (image, topk) in enumerate(zip(images, (None, 3))):
        path = tmp_path / f"i{index}.png"
        path.write_bytes(image)
        params = {} if topk is None else {"topk": topk}
        (theirs,) = run_paddlex(str(paddlex_python), paddlex_job(
            report, "image_classification", [str(path)], params))
        body = {"image": b64(image), "visualize": False, **params}
        code, ours = post(url + "/image-classification", body)
        assert code == 200, ours
        assert set(ours["result"]) == {"categories"}
        mine, res = ours["result"]["categories"], theirs["res"]
        ids = np.asarray(res["class_ids"]).reshape(-1).tolist()
        assert [c["id"] for c in mine] == ids and len(ids) == (topk or 5)
        assert [c["name"] for c in mine] == list(np.asarray(res["label_names"]).reshape(-1))
        assert np.allclose([c["score"] for c in mine], np.asarray(res["scores"]).reshape(-1),
                           atol=1e-4)
    code, ours = post(url + "/image-classification", {"image": b64(images[0])})
    assert code == 200 and cv2.imdecode(np.frombuffer(
        base64.b64decode(ours["result"]["image"]), np.uint8), cv2.IMREAD_COLOR) is not None
    for body, field in (({"image": b64(images[0]), "topk": 0}, "topk"),
                        ({"file": b64(images[0])}, "file"),
                        ({"image": "@@@"}, "image")):
        code, answer = post(url + "/image-classification", body)
        assert code == 422 and field in answer["errorMsg"], answer


def test_object_detection_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                     tmp_path):
    """A PicoDet-signature detector with fixed regions (PaddleX's paddle engine runs it):
    PaddleX's own endpoint and ours, every object, at two thresholds."""
    from tests.support.paddlex_serving import PaddleXServer

    url, grpc_url = api
    page = make_pages(1, seed=5, lines_per_page=8)[0].image
    png = cv2.imencode(".png", page)[1].tobytes()
    with PaddleXServer(paddlex_python, vision_repo, "object_detection", tmp_path) as paddlex:
        for extra in ({}, {"threshold": 0.2}):
            body = {"image": b64(png), "visualize": False, **extra}
            status, theirs = post(paddlex.url + "/object-detection", body)
            assert status == 200, theirs
            code, ours = post(url + "/object-detection", body)
            assert code == 200, ours
            assert set(ours["result"]) == set(theirs["result"]) == {"detectedObjects"}
            mine, their = ours["result"]["detectedObjects"], theirs["result"]["detectedObjects"]
            assert len(mine) == len(their) >= 1
            for got, want in zip(mine, their):
                assert set(got) == set(want)
                assert (got["categoryId"], got["categoryName"]) == (want["categoryId"],
                                                                    want["categoryName"])
                assert np.allclose(got["bbox"], want["bbox"], atol=0.05)
                assert abs(got["score"] - want["score"]) < 1e-4
    # The same boxes as the graph called over gRPC, and a bad threshold named.
    expected = Client(grpc_url, "grpc").predict("object_detection", page, threshold=0.2)
    assert [o["bbox"] for o in mine] == [b["coordinate"] for b in expected["boxes"]]
    code, answer = post(url + "/object-detection", {"image": b64(png), "threshold": 1.5})
    assert code == 422 and "threshold" in answer["errorMsg"]


def test_semantic_segmentation_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                          tmp_path):
    """TinySeg with random weights (plumbing and parity): PaddleX's own endpoint and ours."""
    from tests.support.paddlex_serving import PaddleXServer

    url, _ = api
    image = _png(4)
    with PaddleXServer(paddlex_python, vision_repo, "semantic_segmentation",
                       tmp_path) as paddlex:
        for extra in ({}, {"targetSize": 128}):
            body = {"image": b64(image), "visualize": False, **extra}
            status, theirs = post(paddlex.url + "/semantic-segmentation", body)
            assert status == 200, theirs
            code, ours = post(url + "/semantic-segmentation", body)
            assert code == 200, ours
            assert set(ours["result"]) == set(theirs["result"]) == {"labelMap", "size"}
            assert ours["result"]["size"] == theirs["result"]["size"]
            mine = np.asarray(ours["result"]["labelMap"])
            same = (mine == np.asarray(theirs["result"]["labelMap"])).mean()
            assert same >= 0.999, same  # argmax ties of random logits may differ
    code, answer = post(url + "/semantic-segmentation", {"image": b64(image), "targetSize": 7})
    assert code == 422 and "targetSize" in answer["errorMsg"]


def test_instance_segmentation_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                          tmp_path):
    """Mask-RT-DETR with random weights (plumbing and parity): PaddleX's own endpoint and
    ours, boxes and COCO-RLE masks cropped to their boxes."""
    from tests.support.paddlex_serving import PaddleXServer

    url, _ = api
    body = {"image": b64(_png(6)), "visualize": False, "threshold": 0.3}
    with PaddleXServer(paddlex_python, vision_repo, "instance_segmentation",
                       tmp_path) as paddlex:
        status, theirs = post(paddlex.url + "/instance-segmentation", body)
    assert status == 200, theirs
    code, ours = post(url + "/instance-segmentation", body)
    assert code == 200, ours
    mine, paddlex_objects = ours["result"]["instances"], theirs["result"]["instances"]
    assert set(ours["result"]) == set(theirs["result"]) == {"instances"}
    assert len(mine) == len(paddlex_objects) >= 1
    for got, want in zip(mine, paddlex_objects):
        assert set(got) == set(want)
        assert (got["categoryId"], got["categoryName"]) == (want["categoryId"],
                                                            want["categoryName"])
        assert np.allclose(got["bbox"], want["bbox"], atol=1e-2)
        assert abs(got["score"] - want["score"]) < 1e-4
        assert got["mask"] == want["mask"]


def test_document_preprocessing_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                           tmp_path):
    """PP-LCNet doc orientation (real weights) + UVDoc (random weights): PaddleX's own
    endpoint and ours, on a page turned by 90 degrees."""
    from tests.support.paddlex_serving import PaddleXServer

    url, _ = api
    page = cv2.rotate(make_pages(1, seed=7, lines_per_page=6)[0].image,
                      cv2.ROTATE_90_CLOCKWISE)
    png = cv2.imencode(".png", page)[1].tobytes()
    bodies = [{"file": b64(png), "fileType": 1, "visualize": False},
              {"file": b64(png), "fileType": 1, "visualize": False, "useDocUnwarping": False}]
    with PaddleXServer(paddlex_python, vision_repo, "doc_preprocessor", tmp_path) as paddlex:
        answers = [post(paddlex.url + "/document-preprocessing", b) for b in bodies]
    for body, (status, theirs) in zip(bodies, answers):
        assert status == 200, theirs
        code, ours = post(url + "/document-preprocessing", body)
        assert code == 200, ours
        assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
        (mine,), (their,) = (ours["result"]["docPreprocessingResults"],
                             theirs["result"]["docPreprocessingResults"])
        assert set(mine) == set(their) == {"outputImage", "prunedResult"}
        assert mine["prunedResult"] == their["prunedResult"]
        a, b = (cv2.imdecode(np.frombuffer(base64.b64decode(x["outputImage"]), np.uint8),
                             cv2.IMREAD_COLOR) for x in (mine, their))
        assert a.shape == b.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    assert ours["result"]["docPreprocessingResults"][0]["prunedResult"]["model_settings"] == {
        "use_doc_orientation_classify": True, "use_doc_unwarping": False}


def test_table_recognition_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                      tmp_path):
    """SLANet_plus (real weights) + PP-OCRv4 mobile det/rec, whole image as the table."""
    from tests.support.paddlex_serving import PaddleXServer
    from tests.support.table_dataset import make_table

    url, _ = api
    bodies = [{"file": b64(cv2.imencode(".png", make_table(i).image)[1].tobytes()),
               "fileType": 1, "visualize": False} for i in range(2)]
    bodies[1]["textRecScoreThresh"] = 0.5
    with PaddleXServer(paddlex_python, vision_repo, "table_recognition", tmp_path) as paddlex:
        answers = [post(paddlex.url + "/table-recognition", b) for b in bodies]
    for body, (status, theirs) in zip(bodies, answers):
        assert status == 200, theirs
        code, ours = post(url + "/table-recognition", body)
        assert code == 200, ours
        assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
        (mine,), (their,) = (ours["result"]["tableRecResults"],
                             theirs["result"]["tableRecResults"])
        assert set(mine) == set(their) == {"prunedResult"}
        a, b = mine["prunedResult"], their["prunedResult"]
        assert set(a) == set(b), (sorted(a), sorted(b))
        assert a["model_settings"] == b["model_settings"]
        ocr_a, ocr_b = a["overall_ocr_res"], b["overall_ocr_res"]
        assert set(ocr_a) == set(ocr_b), (sorted(ocr_a), sorted(ocr_b))
        for key in set(ocr_a) - {"rec_scores"}:
            assert ocr_a[key] == ocr_b[key], key
        assert np.allclose(ocr_a["rec_scores"], ocr_b["rec_scores"], atol=1e-3)
        (table_a,), (table_b,) = a["table_res_list"], b["table_res_list"]
        assert set(table_a) == set(table_b), (sorted(table_a), sorted(table_b))
        assert table_a["pred_html"] == table_b["pred_html"]
        assert np.allclose(table_a["cell_box_list"], table_b["cell_box_list"], atol=0.5)
        pred_a, pred_b = table_a["table_ocr_pred"], table_b["table_ocr_pred"]
        assert set(pred_a) == set(pred_b)
        for key in set(pred_a) - {"rec_scores"}:
            assert pred_a[key] == pred_b[key], key
    code, answer = post(url + "/table-recognition", dict(bodies[0], useOcrModel=False))
    assert code == 422 and "useOcrModel" in answer["errorMsg"]


def test_seal_recognition_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                     tmp_path):
    """PP-OCRv4 mobile seal det (real weights) + PP-OCRv4 mobile rec, the image as one seal."""
    from tests.support.paddlex_serving import PaddleXServer
    from tests.support.seal_dataset import make_seal

    url, _ = api
    bodies = [{"file": b64(cv2.imencode(".png", make_seal(i).image)[1].tobytes()),
               "fileType": 1, "visualize": False} for i in range(2)]
    bodies[1]["sealDetThresh"] = 0.25
    with PaddleXServer(paddlex_python, vision_repo, "seal_recognition", tmp_path) as paddlex:
        answers = [post(paddlex.url + "/seal-recognition", b) for b in bodies]
    lines = 0
    for body, (status, theirs) in zip(bodies, answers):
        assert status == 200, theirs
        code, ours = post(url + "/seal-recognition", body)
        assert code == 200, ours
        assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
        (mine,), (their,) = (ours["result"]["sealRecResults"],
                             theirs["result"]["sealRecResults"])
        assert set(mine) == set(their) == {"prunedResult"}
        a, b = mine["prunedResult"], their["prunedResult"]
        assert set(a) == set(b), (sorted(a), sorted(b))
        assert a["model_settings"] == b["model_settings"]
        (seal_a,), (seal_b,) = a["seal_res_list"], b["seal_res_list"]
        assert set(seal_a) == set(seal_b), (sorted(seal_a), sorted(seal_b))
        for key in set(seal_a) - {"rec_scores"}:
            assert seal_a[key] == seal_b[key], key
        assert np.allclose(seal_a["rec_scores"], seal_b["rec_scores"], atol=1e-3)
        lines += len(seal_a["rec_texts"])
    assert lines >= 2
    assert seal_a["text_det_params"]["thresh"] == 0.25


def test_formula_recognition_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                        tmp_path):
    """LaTeX_OCR_rec with random weights (plumbing and parity), the image as one formula."""
    from tests.support.formula_dataset import make_formula
    from tests.support.paddlex_serving import PaddleXServer

    url, _ = api
    body = {"file": b64(cv2.imencode(".png", make_formula(0))[1].tobytes()),
            "fileType": 1, "visualize": False}
    with PaddleXServer(paddlex_python, vision_repo, "formula_recognition",
                       tmp_path) as paddlex:
        status, theirs = post(paddlex.url + "/formula-recognition", body)
    assert status == 200, theirs
    code, ours = post(url + "/formula-recognition", body)
    assert code == 200, ours
    assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
    (mine,), (their,) = (ours["result"]["formulaRecResults"],
                         theirs["result"]["formulaRecResults"])
    assert set(mine) == set(their) == {"prunedResult"}
    assert mine["prunedResult"] == their["prunedResult"]
    assert mine["prunedResult"]["formula_res_list"][0]["rec_formula"]


def test_layout_parsing_answers_as_paddlex_serving(api, vision_repo, paddlex_python,
                                                   tmp_path):
    """Layout detection (PicoDet-family signature, random weights) + OCR + SLANet_plus."""
    from tests.support.ocr_dataset import make_layout_page
    from tests.support.paddlex_serving import PaddleXServer

    url, _ = api
    body = {"file": b64(cv2.imencode(".png", make_layout_page(0))[1].tobytes()),
            "fileType": 1, "visualize": False}
    with PaddleXServer(paddlex_python, vision_repo, "layout_parsing", tmp_path) as paddlex:
        status, theirs = post(paddlex.url + "/layout-parsing", body)
    assert status == 200, theirs
    code, ours = post(url + "/layout-parsing", body)
    assert code == 200, ours
    assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
    (mine,), (their,) = (ours["result"]["layoutParsingResults"],
                         theirs["result"]["layoutParsingResults"])
    assert set(mine) == set(their) == {"prunedResult"}
    a, b = mine["prunedResult"], their["prunedResult"]
    assert set(a) == set(b), (sorted(a), sorted(b))
    assert a["model_settings"] == b["model_settings"]
    boxes_a, boxes_b = a["layout_det_res"]["boxes"], b["layout_det_res"]["boxes"]
    assert [x["label"] for x in boxes_a] == [x["label"] for x in boxes_b]
    assert np.allclose([x["coordinate"] for x in boxes_a], [x["coordinate"] for x in boxes_b],
                       atol=0.05)
    assert a["overall_ocr_res"]["rec_texts"] == b["overall_ocr_res"]["rec_texts"]
    assert [p["block_label"] for p in a["parsing_res_list"]] == [
        p["block_label"] for p in b["parsing_res_list"]]
    assert [p["block_content"] for p in a["parsing_res_list"]] == [
        p["block_content"] for p in b["parsing_res_list"]]
