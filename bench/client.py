"""Client throughput: Client.predict_many / AsyncClient.predict_many against a hand-written
thread pool on the same served OCR pipeline.

The baseline is what a user wrote before predict_many existed: N threads, each with its own
Client, calling predict on in-memory PNG bytes (bench/ocr.py's served loop). The candidates
take the same pages as a folder of PNG files and as one PDF (rendered per page, so the PDF
rows also pay rendering), through one shared Client (threads) and the asyncio client. Rounds
alternate the variants; the table gives each one's median img/s and its ratio to the
baseline's median of the same run.

    python bench/client.py [--pages 24] [--concurrency 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load import machine, predict_loop  # noqa: E402
from hpi_triton import AsyncClient, Client, wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from tests.support.ocr_dataset import cer, make_pages  # noqa: E402


def own_pool(url, encoded, concurrency):
    """The baseline: a thread-local Client per worker thread, predict on bytes."""
    ips, _, _, results = predict_loop(url, "OCR", encoded, concurrency)
    return ips, [r["rec_texts"] for r in results]


def many_threads(url, source, concurrency):
    client = Client(url, "grpc")
    start = time.perf_counter()
    texts = [p.raise_for_error()["rec_texts"]
             for p in client.predict_many("OCR", source, concurrency=concurrency)]
    ips = len(texts) / (time.perf_counter() - start)
    client.close()
    return ips, texts


def many_async(url, source, concurrency):
    async def run():
        async with AsyncClient(url, "grpc") as client:
            start = time.perf_counter()
            texts = [p.raise_for_error()["rec_texts"] async for p in
                     client.predict_many("OCR", source, concurrency=concurrency)]
            return len(texts) / (time.perf_counter() - start), texts

    return asyncio.run(run())


def write_inputs(pages, folder: Path):
    """The pages as PNG files in ``folder`` and as one PDF rendered back at the same size."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(pages):
        cv2.imwrite(str(folder / f"page_{i:03d}.png"), page.image)
    images = [Image.fromarray(cv2.cvtColor(p.image, cv2.COLOR_BGR2RGB)) for p in pages]
    pdf = folder.parent / "pages.pdf"
    images[0].save(pdf, "PDF", resolution=144, save_all=True, append_images=images[1:])
    return folder, pdf


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pages = make_pages(args.pages, seed=1)
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder, pdf = write_inputs(pages, tmp / "pages")
        spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                     "TextRecognition": dirs["PP-OCRv4_mobile_rec"]})
        build_repository([], BuildOptions(out=tmp / "repo"), [spec])
        variants = {
            "own thread pool, bytes (baseline)": lambda url: own_pool(url, encoded,
                                                                      args.concurrency),
            "Client.predict_many, folder": lambda url: many_threads(url, folder,
                                                                    args.concurrency),
            "Client.predict_many, PDF": lambda url: many_threads(url, pdf, args.concurrency),
            "AsyncClient.predict_many, folder": lambda url: many_async(url, folder,
                                                                       args.concurrency),
        }
        rates = {name: [] for name in variants}
        errors = {}
        with TritonServer(tmp / "repo", 0, 0, 0) as server:
            Client(server.grpc_url, "grpc").predict("OCR", encoded[0])  # warm-up
            for _ in range(args.rounds):
                for name, run in variants.items():
                    ips, texts = run(server.grpc_url)
                    rates[name].append(ips)
                    errors[name] = cer(texts, pages)
    base = statistics.median(rates["own thread pool, bytes (baseline)"])
    print(f"\nmachine: {machine()}; "
          f"{time.strftime('%Y-%m-%d')}; {args.pages} pages 960 px wide, concurrency "
          f"{args.concurrency}, {args.rounds} alternating rounds, OCR det+rec over gRPC")
    print(f"{'variant':38s} {'img/s (median)':>15s} {'÷ baseline':>11s} {'CER %':>7s}")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"{name:38s} {median:15.2f} {median / base:11.2f} {100 * errors[name]:7.2f}")


if __name__ == "__main__":
    main()
