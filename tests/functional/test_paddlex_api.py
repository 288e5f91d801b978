"""PaddleX's serving API as ``hpi-triton serve`` serves it, against PaddleX 3.7.2's own basic
serving (``paddlex --serve``) on the same model dirs: the same requests, written as PaddleX's
docs write them (plain HTTP, JSON, base64), answered alike field by field."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from hpi_triton.server import free_port, free_ports
from tests.support.ocr_dataset import make_pages
from tests.support.paddlex_serving import PaddleXServer, b64, post, wait_healthy
from tests.support.repos import build_ocr_repo

pytestmark = pytest.mark.functional

#: Fields of an OCR prunedResult compared exactly (scores within a tolerance: the engines'
#: rounding decides near ties, see test_fidelity).
EXACT = ("dt_polys", "rec_texts", "rec_polys", "rec_boxes", "text_det_params",
         "model_settings", "text_type", "textline_orientation_angles",
         "text_rec_score_thresh", "return_word_box")


@pytest.fixture(scope="module")
def ocr_repo(wheel_models, shared_cache_dir, tmp_path_factory):
    return build_ocr_repo(wheel_models, shared_cache_dir,
                          tmp_path_factory.mktemp("api") / "repo")


@pytest.fixture(scope="module")
def pages():
    """Three PNG pages of 8 lines, English and Chinese."""
    found = []
    for page in make_pages(3, seed=29, lines_per_page=8):
        ok, data = cv2.imencode(".png", page.image)
        assert ok
        found.append(data.tobytes())
    return found


@pytest.fixture(scope="module")
def pdf(pages):
    """A PDF of the first two pages (Pillow's PDF writer, one image per page)."""
    from PIL import Image

    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pages[:2]]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=96)
    return out.getvalue()


@pytest.fixture(scope="module")
def served(ocr_repo, tmp_path_factory):
    """``hpi-triton serve`` with PaddleX's API on a free port: (process, API URL, gRPC URL)."""
    ports = free_ports(4)
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "hpi_triton.cli", "serve", str(ocr_repo), "--http-port",
         str(ports[0]), "--grpc-port", str(ports[1]), "--metrics-port", str(ports[2]),
         "--paddlex-api-port", str(ports[3]), "--log-file", str(log), "--exit-timeout", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{ports[3]}"
    try:
        wait_healthy(url, process)
        yield process, url, f"127.0.0.1:{ports[1]}"
    finally:
        api_pid = _api_child(process.pid)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    # serve never leaves its API behind
    deadline = time.monotonic() + 15
    while api_pid is not None and time.monotonic() < deadline and _alive(api_pid):
        time.sleep(0.2)
    assert api_pid is None or not _alive(api_pid)


@pytest.fixture(scope="module")
def paddlex_server(paddlex_python, ocr_repo, tmp_path_factory):
    with PaddleXServer(paddlex_python, ocr_repo, "OCR",
                       tmp_path_factory.mktemp("paddlex-serve")) as server:
        yield server


def assert_same_page(ours: dict, theirs: dict) -> int:
    """Every prunedResult field equal (scores within 1e-3); returns the line count."""
    a, b = ours["prunedResult"], theirs["prunedResult"]
    assert set(a) == set(b), (sorted(a), sorted(b))
    for key in EXACT:
        assert a[key] == b[key], (key, a[key], b[key])
    assert np.allclose(a["rec_scores"], b["rec_scores"], atol=1e-3)
    return len(a["rec_texts"])


def test_ocr_answers_as_paddlex_serving(served, paddlex_server, pages, pdf):
    _, url, _ = served
    lines = 0
    requests = [{"file": b64(pages[0]), "fileType": 1, "visualize": False},
                {"file": b64(pages[1]), "visualize": False, "logId": "abc"},
                {"file": b64(pages[2]), "fileType": 1, "visualize": False,
                 "textDetThresh": 0.4, "textDetLimitSideLen": 736, "textDetLimitType": "max",
                 "textRecScoreThresh": 0.95, "textDetUnclipRatio": 1.8}]
    for body in requests:
        if "fileType" not in body:  # PaddleX needs fileType for base64; ours detects it
            status, theirs = post(paddlex_server.url + "/ocr", dict(body, fileType=1))
        else:
            status, theirs = post(paddlex_server.url + "/ocr", body)
        assert status == 200, theirs
        code, ours = post(url + "/ocr", body)
        assert code == 200, ours
        assert set(ours) == set(theirs) == {"logId", "errorCode", "errorMsg", "result"}
        assert (ours["errorCode"], ours["errorMsg"]) == (0, "Success")
        assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
        assert len(ours["result"]["ocrResults"]) == 1
        assert set(ours["result"]["ocrResults"][0]) == set(theirs["result"]["ocrResults"][0])
        lines += assert_same_page(ours["result"]["ocrResults"][0],
                                  theirs["result"]["ocrResults"][0])
    assert ours["result"]["ocrResults"][0]["prunedResult"]["text_det_params"]["thresh"] == 0.4
    assert post(url + "/ocr", requests[1])[1]["logId"] == "abc"
    assert lines >= 16
    # A PDF of two pages: rendered at PaddleX's scale, pages in order.
    body = {"file": b64(pdf), "fileType": 0, "visualize": False}
    status, theirs = post(paddlex_server.url + "/ocr", body)
    assert status == 200, theirs
    code, ours = post(url + "/ocr", body)
    assert code == 200, ours
    assert ours["result"]["dataInfo"] == theirs["result"]["dataInfo"]
    assert ours["result"]["dataInfo"]["numPages"] == 2
    for mine, paddlex in zip(ours["result"]["ocrResults"], theirs["result"]["ocrResults"],
                             strict=True):
        assert assert_same_page(mine, paddlex) >= 4
    # Detected as a PDF without fileType (PaddleX needs it).
    assert post(url + "/ocr", {"file": b64(pdf), "visualize": False})[1]["result"] \
        == ours["result"]


def test_visualize_gives_decodable_jpegs_as_paddlex(served, pages):
    import base64

    _, url, _ = served
    code, ours = post(url + "/ocr", {"file": b64(pages[0]), "fileType": 1})  # default: on
    assert code == 200, ours
    entry = ours["result"]["ocrResults"][0]
    assert set(entry) == {"prunedResult", "ocrImage", "inputImage"}
    for key in ("ocrImage", "inputImage"):
        data = base64.b64decode(entry[key])
        assert data[:3] == b"\xff\xd8\xff"  # JPEG
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[0] > 100


def test_bad_requests_are_refused_and_the_service_goes_on(served, pages):
    _, url, _ = served
    png = b64(pages[0])
    cases = [
        ({"fileType": 1}, "file"),                                 # missing field
        ({"file": "%%% not base64", "fileType": 1}, "base64"),
        ({"file": b64(b"not an image at all"), "fileType": 1}, "decodable image"),
        ({"file": b64(b"%PDF-1.4 broken"), "fileType": 0}, "PDF"),
        ({"file": png, "textDetThreshold": 0.3}, "textDetThreshold"),  # unknown field
        ({"file": png, "textDetThresh": "high"}, "textDetThresh"),
        ({"file": png, "textDetThresh": 3}, "textDetThresh"),
        ({"file": png, "fileType": 2}, "fileType"),
        ({"file": png, "returnWordBox": True}, "returnWordBox"),
        ({"file": "http://127.0.0.1:9/page.png"}, "loopback"),     # no proxy into here
        ({"file": "http://169.254.169.254/latest/meta-data"}, "link-local"),
    ]
    for body, named in cases:
        code, answer = post(url + "/ocr", body)
        assert code == 422, (body, answer)
        assert answer["errorCode"] == 422 and named in answer["errorMsg"], (body, answer)
        assert "result" not in answer
    for raw in (b"{not json", b"[1, 2]"):
        request = __import__("urllib.request").request.Request(
            url + "/ocr", data=raw, headers={"Content-Type": "application/json"})
        try:
            __import__("urllib.request").request.urlopen(request, timeout=30)
            raise AssertionError("accepted")
        except __import__("urllib.error").error.HTTPError as exc:
            assert exc.code == 422 and json.loads(exc.read())["errorCode"] == 422
    code, answer = post(url + "/ocr", {"file": png, "visualize": False})
    assert code == 200 and answer["result"]["ocrResults"][0]["prunedResult"]["rec_texts"]


def test_concurrent_clients_get_what_sequential_ones_get(served, pages):
    _, url, _ = served
    bodies = [{"file": b64(pages[i % 3]), "fileType": 1, "visualize": False}
              for i in range(16)]
    sequential = [post(url + "/ocr", b)[1]["result"] for b in bodies[:3]]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: post(url + "/ocr", b), bodies))
    assert all(code == 200 for code, _ in answers)
    for i, (_, answer) in enumerate(answers):
        assert answer["result"] == sequential[i % 3]


def test_serve_heals_its_api(served, pages):
    process, url, _ = served
    import urllib.request

    with urllib.request.urlopen(url + "/docs", timeout=10) as response:
        assert response.status == 200
    with urllib.request.urlopen(url + "/openapi.json", timeout=10) as response:
        schema = json.loads(response.read())
    assert "/ocr" in schema["paths"] and "/health" in schema["paths"]
    request_schema = schema["paths"]["/ocr"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    assert {"file", "fileType", "textDetLimitSideLen", "useTextlineOrientation"} \
        <= set(request_schema["properties"])
    api_pid = _api_child(process.pid)
    os.kill(api_pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        child = _api_child(process.pid)
        if child not in (None, api_pid):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the API was not restarted")
    wait_healthy(url, process, timeout=60)
    code, answer = post(url + "/ocr", {"file": b64(pages[0]), "visualize": False})
    assert code == 200, answer


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _api_child(pid: int):
    from hpi_triton.server import child_processes

    for child, argv in child_processes(pid):
        if b"api" in argv and b"hpi_triton.cli" in argv:
            return child
    return None


def test_api_alone_over_replicas_with_a_key(served, pages):
    """``hpi-triton api`` in front of two Triton URLs, one of them dead: requests go to the
    ready one; a bearer token is required; URL inputs can be turned off."""
    _, _, grpc_url = served
    port = free_port()
    env = dict(os.environ, HPI_TRITON_API_KEY="s3cret")
    api = subprocess.Popen(
        [sys.executable, "-m", "hpi_triton.cli", "api", "--triton-url", grpc_url,
         "--triton-url", f"127.0.0.1:{free_port()}", "--port", str(port), "--no-url-inputs"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, api, timeout=60)
        body = {"file": b64(pages[0]), "visualize": False}
        code, answer = post(url + "/ocr", body)
        assert code == 401 and answer["errorCode"] == 401
        key = {"Authorization": "Bearer s3cret"}
        assert post(url + "/ocr", body, headers={"Authorization": "Bearer wrong"})[0] == 401
        for _ in range(4):  # round-robin never picks the dead replica
            code, answer = post(url + "/ocr", body, headers=key)
            assert code == 200, answer
        code, answer = post(url + "/ocr", {"file": "https://example.com/a.png"}, headers=key)
        assert code == 422 and "turned off" in answer["errorMsg"]
    finally:
        api.terminate()
        api.wait(30)
