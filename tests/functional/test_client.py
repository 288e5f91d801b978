"""The client for real workloads, against a real tritonserver serving OCR: one Client shared by
threads (HTTP and gRPC), the asyncio client, many inputs at once (folders, PDFs) in order with
per-input errors, and results saved as PaddleX-shaped JSON and drawn pictures."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from hpi_triton import AsyncClient, Client
from hpi_triton.errors import InputError, InvalidRequestError
from hpi_triton.server import TritonServer
from tests.support.drawing import assert_drawn
from tests.support.ocr_dataset import font_path, make_pages
from tests.support.repos import build_ocr_repo

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def ocr_server(wheel_models, shared_cache_dir, tmp_path_factory):
    out = build_ocr_repo(wheel_models, shared_cache_dir,
                         tmp_path_factory.mktemp("client") / "repo")
    with TritonServer(out, 0, 0, 0, log_path=out.parent / "tritonserver.log") as server:
        yield server


@pytest.fixture(scope="module")
def pages():
    return make_pages(8, seed=3, lines_per_page=3)


def _texts(result):
    return result["rec_texts"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_client_shared_by_eight_threads(ocr_server, pages, protocol):
    url = ocr_server.http_url if protocol == "http" else ocr_server.grpc_url
    with Client(url, protocol) as client:
        sequential = [_texts(client.predict("OCR", p.image)) for p in pages]
        assert all(sequential)
        # Each image twice, from 8 worker threads at once through the one client.
        with ThreadPoolExecutor(8) as pool:
            shared = list(pool.map(lambda p: _texts(client.predict("OCR", p.image)),
                                   pages + pages))
        assert shared == sequential + sequential
        # predict_many does the same with bounded concurrency, in input order.
        many = list(client.predict_many("OCR", [p.image for p in pages], concurrency=4))
        assert [m.index for m in many] == list(range(len(pages)))
        assert [_texts(m.raise_for_error()) for m in many] == sequential


def test_async_client_same_results(ocr_server, pages):
    with Client(ocr_server.http_url) as client:
        sequential = [_texts(client.predict("OCR", p.image)) for p in pages[:4]]

    async def main(url, protocol):
        async with AsyncClient(url, protocol) as client:
            gathered = await asyncio.gather(*(client.predict("OCR", p.image)
                                              for p in pages[:4]))
            streamed = [m async for m in client.predict_many(
                "OCR", [p.image for p in pages[:4]], concurrency=3)]
            return [_texts(r) for r in gathered], [_texts(m.raise_for_error())
                                                   for m in streamed]

    for url, protocol in ((ocr_server.http_url, "http"), (ocr_server.grpc_url, "grpc")):
        gathered, streamed = asyncio.run(main(url, protocol))
        assert gathered == sequential and streamed == sequential


def _pdf(path, words):
    """A real PDF (Pillow's writer) with one big word per page, rendered at 144 DPI."""
    big = font_path("DejaVuSans-Bold.ttf") or font_path("DejaVuSans.ttf")
    from PIL import ImageFont

    font = ImageFont.truetype(big, 64)
    images = []
    for word in words:
        page = Image.new("RGB", (1190, 842), "white")  # A4 landscape at 144 DPI
        ImageDraw.Draw(page).text((120, 360), word, fill="black", font=font)
        images.append(page)
    images[0].save(path, "PDF", resolution=144, save_all=True, append_images=images[1:])


def test_pdf_pages_are_inputs(ocr_server, tmp_path):
    words = ["ALPHA 1024", "BRAVO 2048", "CHARLIE 4096"]
    pdf = tmp_path / "three.pdf"
    _pdf(pdf, words)
    with Client(ocr_server.grpc_url, "grpc") as client:
        results = list(client.predict_many("OCR", pdf))
        assert [r.page_index for r in results] == [0, 1, 2]
        assert all(r.input_path == str(pdf) for r in results)
        for word, prediction in zip(words, results):
            text = " ".join(_texts(prediction.raise_for_error()))
            assert word.replace(" ", "") in text.replace(" ", ""), (word, text)
            assert prediction.image().shape == (842, 1190, 3)  # rendered at 144 DPI
        # A lower DPI renders smaller pages; predict() refuses a PDF, naming predict_many.
        half = list(client.predict_many("OCR", pdf.read_bytes(), dpi=72))
        assert len(half) == 3 and half[0].image().shape == (421, 595, 3)
        with pytest.raises(InputError, match="predict_many"):
            client.predict("OCR", pdf)
        # A corrupt PDF is one failed input, not a failed call.
        broken = tmp_path / "broken.pdf"
        broken.write_bytes(b"%PDF-1.4 truncated")
        (failed,) = list(client.predict_many("OCR", broken))
        assert isinstance(failed.error, InputError) and "broken.pdf" in str(failed.error)


def test_directory_with_a_corrupt_image(ocr_server, pages, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for i, page in enumerate(pages[:3]):
        cv2.imwrite(str(folder / f"page{i}.png"), page.image)
    (folder / "page1b.png").write_bytes(b"scanner error: no image data")
    (folder / "notes.txt").write_text("not an input")
    with Client(ocr_server.http_url) as client:
        results = list(client.predict_many("OCR", folder, concurrency=2))
        assert [r.input_path for r in results] == [
            str(folder / n) for n in ("page0.png", "page1.png", "page1b.png", "page2.png")]
        bad = results[2]
        assert isinstance(bad.error, InvalidRequestError)
        assert str(bad.error).startswith(f"input {str(folder / 'page1b.png')!r}: ")
        assert "not a decodable image" in str(bad.error) and bad.error.status == "400"
        assert [r.ok for r in results] == [True, True, False, True]
        assert _texts(results[3].result) == _texts(client.predict("OCR", pages[2].image))
        # Saved like PaddleX's save_to_json / save_to_img.
        saved = results[0].save_to_json(tmp_path / "out")
        document = json.loads(saved.read_text())
        assert document["res"]["input_path"] == str(folder / "page0.png")
        assert document["res"]["rec_texts"] == _texts(results[0].result)
        picture = results[0].save_to_img(tmp_path / "out")
        drawn = np.asarray(Image.open(picture))
        assert drawn.shape == (pages[0].image.shape[0], 2 * pages[0].image.shape[1], 3)
        assert_drawn(pages[0].image, results[0].result)
        with pytest.raises(InvalidRequestError):
            bad.raise_for_error()


def test_cli_infer_folder_pdf_and_output_dir(ocr_server, pages, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, page in enumerate(pages[:2]):
        cv2.imwrite(str(folder / f"p{i}.jpg"), page.image)
    (folder / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    _pdf(folder / "doc.pdf", ["DELTA 77", "ECHO 88"])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "hpi_triton.cli", "infer", "--url",
                           ocr_server.http_url, "--pipeline", "OCR", str(folder),
                           "--output-dir", str(out), "--concurrency", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr  # one input failed
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    # doc.pdf's two pages, then p0, p1: sorted by name, pages in order; the corrupt one
    # is an error line on stderr that names it.
    assert [(line["input_path"], line.get("page_index")) for line in lines] == [
        (str(folder / "doc.pdf"), 0), (str(folder / "doc.pdf"), 1),
        (str(folder / "p0.jpg"), None), (str(folder / "p1.jpg"), None)]
    assert "zz_corrupt.jpg" in proc.stderr and proc.stderr.count("error:") == 1
    assert "DELTA77" in "".join(lines[0]["rec_texts"]).replace(" ", "")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}_res.{ext}" for stem in ("doc_0", "doc_1", "p0", "p1")
        for ext in ("json", "png"))
    for line, stem in zip(lines, ("doc_0", "doc_1", "p0", "p1")):
        saved = json.loads((out / f"{stem}_res.json").read_text())["res"]
        assert saved["rec_texts"] == line["rec_texts"]
        picture = np.asarray(Image.open(out / f"{stem}_res.png"))
        assert picture.std() > 5


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_unknown_model_lists_the_served_ones_and_case_follows_build(ocr_server, pages,
                                                                     protocol):
    from hpi_triton import InvalidRequestError

    url = ocr_server.http_url if protocol == "http" else ocr_server.grpc_url
    with Client(url, protocol) as client:
        with pytest.raises(InvalidRequestError) as refused:
            client.predict("table_recognition", pages[0].image)
        message = str(refused.value)
        assert "holds no model 'table_recognition'" in message
        assert "OCR" in message and "OCR_TextDetection" in message
        # 'ocr' builds the OCR graph; the client takes it the same way.
        lower = client.predict("ocr", pages[0].image)
        assert lower["rec_texts"] == client.predict("OCR", pages[0].image)["rec_texts"]
