"""PaddleX serving API pieces without a server: request schemas derived from the graphs'
declarations, files (base64, images, PDFs, URLs with their guard), errors → HTTP status."""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import threading

import cv2
import numpy as np
import pytest

from hpi_triton.errors import (
    InferError,
    InvalidRequestError,
    RequestFieldError,
    ServerFaultError,
    ServiceUnavailableError,
    URLRefusedError,
)
from hpi_triton.paddlex_api import files
from hpi_triton.paddlex_api.app import error_status, prune, validation_message
from hpi_triton.paddlex_api.pipelines import pipeline_api
from hpi_triton.python_backend.ocr import ocr_pipeline


def test_ocr_request_fields_come_from_the_graph_declarations():
    api = pipeline_api("OCR")
    assert api.fields == ocr_pipeline.PARAMETERS.serving_fields()
    # PaddleX 3.7.2's OCR InferRequest fields (schemas/ocr.py), each reaching its parameter.
    assert set(api.fields) == {"useDocOrientationClassify", "useDocUnwarping",
                               "useTextlineOrientation", "textDetLimitSideLen",
                               "textDetLimitType", "textDetThresh", "textDetBoxThresh",
                               "textDetUnclipRatio", "textRecScoreThresh"}
    fields = set(api.request_model.model_fields)
    assert fields == set(api.fields) | {"file", "fileType", "visualize", "logId",
                                        "returnWordBox"}
    request = api.request_model.model_validate({
        "file": "eA==", "textDetLimitSideLen": 960, "textRecScoreThresh": 0.5,
        "useTextlineOrientation": False, "textDetBoxThresh": None})
    assert api.parameters(request) == {"limit_side_len": 960, "text_rec_score_thresh": 0.5,
                                       "use_textline_orientation": False}
    # PaddleX's get_model_settings: naming a doc switch decides use_doc_preprocessor.
    request = api.request_model.model_validate({"file": "eA==", "useDocUnwarping": False,
                                                "useDocOrientationClassify": True})
    assert api.parameters(request)["use_doc_preprocessor"] is True


def test_ocr_request_refusals_name_the_field():
    from pydantic import ValidationError

    api = pipeline_api("OCR")
    for body, field in (({"file": "x", "textDetThreshold": 1}, "textDetThreshold"),
                        ({"file": "x", "textDetLimitSideLen": "big"}, "textDetLimitSideLen"),
                        ({"file": "x", "fileType": 3}, "fileType"), ({}, "file")):
        with pytest.raises(ValidationError) as info:
            api.request_model.model_validate(body)
        assert field in validation_message(info.value)
    for body, field in (({"file": "x", "textDetThresh": 1.5}, "textDetThresh"),
                        ({"file": "x", "textDetLimitType": "wide"}, "textDetLimitType"),
                        ({"file": "x", "returnWordBox": True}, "returnWordBox")):
        with pytest.raises(RequestFieldError) as info:
            api.parameters(api.request_model.model_validate(body))
        assert info.value.field == field and field in str(info.value)
    with pytest.raises(RequestFieldError, match="expected a number in \\[0, 1\\]"):
        api.parameters(api.request_model.model_validate({"file": "x", "textDetThresh": 1.5}))
    assert pipeline_api("no_such_pipeline") is None


def test_base64_and_file_kinds():
    limits = files.FileLimits(max_bytes=100)
    assert files.decode_base64(base64.b64encode(b"abc").decode(), limits) == b"abc"
    wrapped = base64.encodebytes(b"x" * 60).decode()  # MIME line breaks
    assert files.decode_base64(wrapped, limits) == b"x" * 60
    for bad in ("not base64!", "", base64.b64encode(b"y" * 200).decode()):
        with pytest.raises(RequestFieldError, match="file"):
            files.decode_base64(bad, limits)
    assert files.file_kind(b"%PDF-1.7 ...", None) == "PDF"
    assert files.file_kind(b"\x89PNG", None) == "IMAGE"
    assert files.file_kind(b"%PDF-1.7", 1) == "IMAGE" and files.file_kind(b"", 0) == "PDF"
    assert files.is_url("https://example.com/a.png") and not files.is_url("aGk=")


def test_images_decode_as_paddlex_and_respect_the_pixel_limit():
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    png = cv2.imencode(".png", image)[1].tobytes()
    assert np.array_equal(files.decode_image(png, 10_000), image)
    with pytest.raises(RequestFieldError, match="the limit is 100"):
        files.decode_image(png, 100)
    with pytest.raises(RequestFieldError, match="not a decodable image"):
        files.decode_image(b"\x00" * 50, 10_000)
    assert files.data_info("IMAGE", [(60, 40)]) == {"width": 60, "height": 40,
                                                    "type": "image"}


def _pdf(pages: int) -> bytes:
    from PIL import Image

    images = [Image.new("RGB", (72 + 10 * i, 36), (255, 255, 255)) for i in range(pages)]
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=72)
    return out.getvalue()


def test_pdfs_render_at_paddlex_scale_with_limits():
    document = files.PDFDocument(_pdf(3), files.FileLimits())
    assert document.page_count == 3
    pages = [document.render(i) for i in range(3)]
    assert [p.shape for p in pages] == [(72, 144 + 20 * i, 3) for i in range(3)]
    assert pages[0].dtype == np.uint8 and pages[0].min() == 255
    document.close()
    with pytest.raises(RequestFieldError, match="3 pages; the limit is 2"):
        files.PDFDocument(_pdf(3), files.FileLimits(max_pdf_pages=2))
    with pytest.raises(RequestFieldError, match="not a readable PDF"):
        files.PDFDocument(b"%PDF-1.4 nothing", files.FileLimits())
    small = files.PDFDocument(_pdf(1), files.FileLimits(max_pixels=1000))
    with pytest.raises(RequestFieldError, match="PDF page 1 renders to"):
        small.render(0)


def test_addresses_that_are_not_fetched():
    for address, kind in (("127.0.0.1", "loopback"), ("10.1.2.3", "private"),
                          ("192.168.0.1", "private"), ("169.254.169.254", "link-local"),
                          ("::1", "loopback"), ("fe80::1", "link-local"),
                          ("::ffff:127.0.0.1", "loopback"), ("0.0.0.0", "unspecified")):
        assert kind in files.address_refusal(address), address
    assert files.address_refusal("8.8.8.8") is None


@pytest.fixture()
def web():
    """A local HTTP server: /page.png (PNG bytes), /big (2 KiB), /hop → /page.png."""
    image = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", "/page.png")
                self.end_headers()
                return
            body = {"/page.png": image, "/big": b"z" * 2048}.get(self.path)
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", image
    server.shutdown()


def test_url_inputs_are_guarded(web):
    base, image = web
    allowed = files.FileLimits(allow_private_urls=True, max_bytes=1024)
    fetch = lambda url, limits: asyncio.run(files.fetch_url(url, limits))  # noqa: E731
    assert fetch(base + "/page.png", allowed) == image
    assert fetch(base + "/hop", allowed) == image  # redirects followed
    with pytest.raises(URLRefusedError, match="larger than|limit is 1024"):
        fetch(base + "/big", allowed)
    with pytest.raises(URLRefusedError, match="HTTP 404"):
        fetch(base + "/missing", allowed)
    with pytest.raises(URLRefusedError, match="loopback"):
        fetch(base + "/page.png", files.FileLimits())
    with pytest.raises(URLRefusedError, match="turned off"):
        fetch(base + "/page.png", files.FileLimits(url_inputs=False))
    with pytest.raises(URLRefusedError, match="localhost"):
        fetch(base.replace("127.0.0.1", "localhost") + "/page.png", files.FileLimits())


def test_errors_map_to_paddlex_statuses():
    assert error_status(RequestFieldError("file", "bad")) == 422
    assert error_status(InvalidRequestError("graph refused the image")) == 422
    assert error_status(ServiceUnavailableError("reloading")) == 503
    assert error_status(InferError("no answer")) == 503
    assert error_status(ServerFaultError("failed")) == 500
    assert error_status(RuntimeError("bug")) == 500
    assert prune({"input_path": "x", "a": [{"page_index": 1, "b": 2}]}) == {"a": [{"b": 2}]}


def test_coco_rle_as_pycocotools_writes_it():
    """Strings pycocotools 2.0.8's ``mask.encode`` gave for these masks (PaddleX's
    instance-segmentation app sends them)."""
    from hpi_triton.ensembles.vision import coco_rle

    box = np.zeros((50, 60), np.uint8)
    box[10:40, 5:55] = 1
    assert coco_rle(box) == "T8n0d0" + "0" * 97 + "`7"
    assert coco_rle((np.arange(35).reshape(5, 7) % 3 == 0).astype(np.uint8)) \
        == "01201000O10O1000O10OO"
    assert coco_rle(np.ones((4, 4), np.uint8)) == "0`0"


def test_image_files_pass_through_to_the_graph_only_when_it_decodes_them_as_paddlex():
    """8-bit PNG/JPEG without an EXIF turn go to tritonserver as the file; what the graph's
    decoder would read differently from PaddleX's IMREAD_COLOR is decoded here."""
    import io

    import cv2
    from PIL import Image

    from hpi_triton.errors import RequestFieldError
    from hpi_triton.paddlex_api import files

    rng = np.random.default_rng(3)
    bgr = rng.integers(0, 255, (40, 60, 3), np.uint8)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    passed = files.prepare_image(png, 10_000)
    assert isinstance(passed, files.EncodedImage) and passed.size == (60, 40)
    assert passed.data == png
    # The pixels are needed to draw the result: decoded here, the same pixels.
    drawn = files.prepare_image(png, 10_000, need_pixels=True)
    assert isinstance(drawn, np.ndarray) and np.array_equal(drawn, bgr)
    # 16-bit PNG: PaddleX's IMREAD_COLOR scales it; decoded here as PaddleX does.
    deep = cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes()
    assert isinstance(files.prepare_image(deep, 10_000), np.ndarray)
    # A JPEG whose EXIF says "rotate 90": IMREAD_COLOR turns it upright, so decode here.
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(bgr[:, :, ::-1]).save(buffer, "JPEG", exif=exif.tobytes())
    turned = files.prepare_image(buffer.getvalue(), 10_000)
    assert isinstance(turned, np.ndarray) and turned.shape[:2] == (60, 40)
    assert files.image_size(turned) == (40, 60)
    with pytest.raises(RequestFieldError, match="limit is 1000"):
        files.prepare_image(png, 1_000)
    with pytest.raises(RequestFieldError, match="not a decodable image"):
        files.prepare_image(b"GIF89a-not-really", 10_000)


def test_a_dns_name_with_several_addresses_becomes_several_replicas(monkeypatch):
    """A Kubernetes headless Service: one name, an address per pod; requests go round-robin
    over the ready ones (one gRPC channel would pin them all to one pod)."""
    import asyncio
    import socket

    from hpi_triton.paddlex_api.triton import TritonPool

    answers = {"triton-headless": ["10.0.0.7", "10.0.0.9", "10.0.0.7"], "v6": ["fd00::1"]}

    async def getaddrinfo(host, port, type=0):
        return [(socket.AF_INET, type, 6, "", (a, port)) for a in answers[host]]

    async def endpoints():
        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        pool = TritonPool(["triton-headless:8001", "v6:8001", "127.0.0.1:9001"])
        return pool, await pool._endpoints()

    pool, found = asyncio.run(endpoints())
    assert found == ["10.0.0.7:8001", "10.0.0.9:8001", "[fd00::1]:8001", "127.0.0.1:9001"]
    pool.ready = found[:2]
    assert [pool._pick() for _ in range(4)] == ["10.0.0.9:8001", "10.0.0.7:8001"] * 2
