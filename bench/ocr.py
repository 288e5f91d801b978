"""OCR throughput on realistic pages: the served default and fast modes against RapidOCR 1.4.4
and PaddleX 3.7.2 in-process, with the per-stage split and the share of the compute floor.

    python bench/ocr.py [--set realistic|short|document] [--pages 24] [--clients 1 4]
                        [--concurrency 4] [--paddlex-python ~/pdx/bin/python] [--pdf F ...]
                        [--peers openvino openvino-fp32 onnxruntime]

Pages: ``realistic`` (default) are 640-1400 px a side with 10-16 lines of mixed length
(hpi_triton.pages.make_realistic_pages, seed 3); ``short`` is the older set of 960x530 pages
with 5 short lines; ``document`` are real pages of PDF manuals Debian ships (``--pdf``),
rendered at PaddleX's 144 DPI, their text layer as the truth.

Accuracy, three ways: CER without spaces (what the ``--fast`` gate bounds: characters read
wrong), CER with spaces (lines joined by one space, whitespace collapsed) and word F1 (words
as multisets, order-free, so a text layer's order does not count): the last two also count
merged words ("Invoicenumber4711"), which the first cannot see.

Baselines, one page at a time in this process: RapidOCR 1.4.4 (rapidocr_onnxruntime, its
defaults: PP-OCRv4 mobile det/rec + mobile v2 line classifier on ONNX Runtime) and, with
``--paddlex-python``, PaddleX 3.7.2's own OCR pipeline in its own environment (numpy 2) on the
same model dirs. With ``--peers`` (default ``openvino openvino-fp32``; ``--peers`` alone: none),
RapidOCR 3.10 in its own venv (bench/peers.py, made once in the test cache) on the same ONNX
files as RapidOCR 1.4.4, classifier on, every stage on OpenVINO with its defaults (bf16 on CPUs
with bf16 units; the row names the precision the compiled models run at), on OpenVINO forced to
f32, or on ONNX Runtime; two passes after a warm-up page, like RapidOCR 1.4.4.
Ours, built from the same models as a user builds them: **default** (``hpi-
triton build --pipeline OCR --concurrency N``: PaddleX's results) and **fast** (``--fast
--concurrency N``: gated int8 + width buckets), each served by a real tritonserver over gRPC.
Each served mode is read three times: a first pass at the highest client count (every page size
new to the server), then each client count again (sizes seen; OpenVINO keeps kernels per input
shape, as a long-running server does for recurring page sizes). RapidOCR is timed on a first
and a second pass too.

The compute floor: the fp32 multiply-adds of the engine calls the default graph makes per
page (counted per call from the OpenVINO models at the shapes the graph sends), against
cores x clock x fp32 FLOP/cycle: 64 where the FMA pipes are 512 bits wide (AMD Zen 5, Intel
AVX-512 server cores), else 32 (two 256-bit FMA pipes: AVX2 CPUs, Zen 4's double-pumped
AVX-512).

What the engines allow: before any server runs, each mode's graph reads the pages in process
while its engine calls are recorded; then each engine alone, on one thread, runs those calls
(every shape once before the timed pass). Their sum per page bounds the mode: N cores cannot
serve more than N x 1000 / (engine ms per page) pages a second, whatever the scheduling, since
the graph's own work, transport and contention only add to it. The table prints that bound
against RapidOCR and the share of it the served mode reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import machine, model_stats, percentiles, predict_loop  # noqa: E402
from bench.peers import (  # noqa: E402
    VARIANTS,
    rapidocr3_label,
    rapidocr3_python,
    run_rapidocr3,
    write_pages,
)
from hpi_triton import wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.pages import document_pages, make_pages, make_realistic_pages, scores  # noqa: E402
from hpi_triton.python_backend.common.engine import FunctionEngine  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from hpi_triton.transforms.layout import LayoutTransform  # noqa: E402
from hpi_triton.transforms.local_ocr import LocalOCR  # noqa: E402
from hpi_triton.transforms.quantize import QuantizeTransform  # noqa: E402

#: Manuals Debian ships as PDFs with a text layer (typeset by TeX: prose, code, tables).
DEBIAN_MANUALS = [Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
                  Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
                  Path("/usr/share/doc/bzip2/manual.pdf.gz"),
                  Path("/usr/share/doc/nettle-dev/nettle.pdf.gz")]


def real_pages(pdfs, count):
    """``count`` real A4/letter pages, as even a share of each PDF found as the count allows,
    rendered at PaddleX's 144 DPI, skipping each manual's first pages (title, contents)."""
    found = [p for p in pdfs if p.exists()]
    if not found:
        sys.exit(f"--set document: none of {', '.join(map(str, pdfs))} exists; give --pdf")
    pages = []
    for i, pdf in enumerate(found):
        share = (count - len(pages)) // (len(found) - i)
        pages += document_pages(pdf, share, first=4)
    return pages


def flop_per_cycle(cpuinfo: str) -> int:
    """Peak fp32 FLOP per cycle per core: 2 FMA pipes x lanes x 2 (see the module docstring)."""
    flags = set(re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split())
    family = int(re.search(r"^cpu family\s*:\s*(\d+)", cpuinfo, re.M).group(1))
    amd = "AuthenticAMD" in cpuinfo
    wide = "avx512f" in flags and (not amd or family >= 26)
    return 64 if wide else 32


def run_rapidocr(pages):
    """Two passes of RapidOCR over ``pages``: [(img/s, p50, p95, scores)] each."""
    from rapidocr_onnxruntime import RapidOCR

    engine = RapidOCR()
    engine(make_pages(1, seed=99)[0].image)  # warm-up on another page
    passes = []
    for _ in range(2):
        predictions, latencies = [], []
        start = time.perf_counter()
        for page in pages:
            t0 = time.perf_counter()
            result, _ = engine(page.image)
            latencies.append((time.perf_counter() - t0) * 1e3)
            predictions.append([line[1] for line in (result or [])])
        passes.append((len(pages) / (time.perf_counter() - start), *percentiles(latencies),
                       scores(predictions, pages)))
    return passes


def run_paddlex(python, repo, pages, tmp):
    """PaddleX 3.7.2's OCR pipeline on the default build's model dirs: (img/s, p50, p95, scores)."""
    from hpi_triton.compare import run_paddlex as run
    from hpi_triton.compare.paddlex_config import paddlex_job

    paths, warmup = write_pages(pages, tmp)
    report = json.loads((repo / "build_report.json").read_text())
    job = dict(paddlex_job(report, "OCR", paths, {}), warmup=warmup)
    records = {r["input"]: r for r in run(python, job) if "res" in r}
    seconds = [records[p]["seconds"] for p in paths]
    texts = [records[p]["res"]["rec_texts"] for p in paths]
    return (len(paths) / sum(seconds), *percentiles([s * 1e3 for s in seconds]),
            scores(texts, pages))


def build(out, dirs, fast, transforms, hosting):
    """An OCR build as ``hpi-triton build --pipeline OCR [--fast] --hosting H`` makes it."""
    spec = pipeline_spec("OCR", {"TextDetection": dirs["PP-OCRv4_mobile_det"],
                                 "TextRecognition": dirs["PP-OCRv4_mobile_rec"],
                                 "TextLineOrientation": dirs["ch_ppocr_mobile_v2_cls_onnx"]},
                         fast=fast)
    return build_repository([], BuildOptions(out=out, transforms=transforms, hosting=hosting),
                            [spec])


def serve_mode(repo, pages, encoded, clients):
    """Rows (label, img/s, p50, p95, scores) and the per-model statistics of the last run."""
    rows, split = [], {}
    with TritonServer(repo, 0, 0, 0) as server:
        url = server.grpc_url
        most = max(clients)
        ips, p50, p95, results = predict_loop(url, "OCR", encoded, most)
        rows.append((f"first pass, {most} clients", ips, p50, p95,
                     scores([r["rec_texts"] for r in results], pages)))
        for count in clients:
            before = model_stats(url)
            ips, p50, p95, results = predict_loop(url, "OCR", encoded, count)
            after = model_stats(url)
            rows.append((f"{count} client(s)", ips, p50, p95,
                         scores([r["rec_texts"] for r in results], pages)))
            split = {name: {k: (after[name][k] - before.get(name, {}).get(k, 0)) / len(pages)
                            for k in after[name]} for name in after}
    return rows, split


def conv_flops(model, shape) -> float:
    """fp32 FLOPs (2 per multiply-add) of ``model``'s convolutions and matmuls at ``shape``."""
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    total = 0.0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in ("Convolution", "GroupConvolution"):
            out = list(op.get_output_shape(0))
            weights = op.input(1).get_shape()
            per_output = int(np.prod(weights[-3:])) if kind == "GroupConvolution" else \
                int(np.prod(weights[1:]))
            total += 2.0 * int(np.prod(out)) * per_output
        elif kind == "ConvolutionBackpropData":
            data, weights = op.input(0).get_shape(), op.input(1).get_shape()
            total += 2.0 * int(np.prod(data)) * int(np.prod(weights[1:]))
        elif kind == "MatMul":
            a = op.input(0).get_shape()
            k = a[-2] if op.get_attributes().get("transpose_a") else a[-1]
            total += 2.0 * int(np.prod(list(op.get_output_shape(0)))) * int(k)
    return total


def record_inputs(repo, pages):
    """The OCR graph of ``repo`` run in process on ``pages``: (LocalOCR, {role: [batches the
    graph sends that engine]}), as the served graph sends them (its own batching)."""
    ocr = LocalOCR.load(repo, "OCR")
    runners = {role: ocr.runner(role) for role in ocr.models}
    sent = {role: [] for role in ocr.models}

    def recorder(role):
        def call(batch):
            sent[role].append(np.array(batch, np.float32))
            return runners[role].run(batch)
        return FunctionEngine(call)

    flow = ocr.flow({role: recorder(role) for role in ocr.models})
    for page in pages:
        flow.run(page.image)
    return ocr, sent


def gflop_per_role(fp32_repo, ocr, sent, pages):
    """fp32 GFLOP per page of each role's calls ``sent``, counted on ``fp32_repo``'s models
    (the same networks as an int8 build's)."""
    import openvino as ov

    core, result = ov.Core(), {}
    fp32 = LocalOCR.load(fp32_repo, "OCR")
    for role, batches in sent.items():
        # Read once per role: conv_flops reshapes the model to each shape it counts.
        model = core.read_model(str(fp32.engine_dir(role) / "model.xml"))
        per_shape = {}
        for shape in (tuple(b.shape) for b in batches):
            if shape not in per_shape:
                per_shape[shape] = conv_flops(model, shape)
        result[role] = sum(per_shape[tuple(b.shape)] for b in batches) / len(pages) / 1e9
    return result


def peak_gflops():
    """(cores, fp32 GFLOP/s peak of all cores) of this machine."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    mhz = max(float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", cpuinfo))
    cores = os.cpu_count() or 1
    return cores, cores * mhz * 1e6 * flop_per_cycle(cpuinfo) / 1e9


def engine_ms(ocr, sent, pages, threads=1):
    """Each role's engine alone on ``threads`` threads (0: every core), on the calls
    ``sent``: ms per page. Every call runs once before the timed pass (OpenVINO compiles
    kernels per new input shape)."""
    times = {}
    for role, batches in sent.items():
        run = ocr.runner(role, threads=threads).run
        for batch in batches:
            run(batch)
        started = time.perf_counter()
        for batch in batches:
            run(batch)
        times[role] = (time.perf_counter() - started) * 1e3 / len(pages)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("realistic", "short", "document"), default="realistic")
    parser.add_argument("--pdf", type=Path, nargs="+", default=DEBIAN_MANUALS,
                        help="PDFs (.pdf or .pdf.gz) for --set document; their text layer is "
                             "the truth")
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, default=4,
                        help="clients the builds choose their engine layout for (0: default)")
    parser.add_argument("--paddlex-python", default=os.environ.get("HPI_TRITON_PADDLEX_PYTHON"))
    parser.add_argument("--hosting", default="auto", choices=("auto", "graph", "python"),
                        help="the builds' --hosting (auto: measured by --concurrency)")
    parser.add_argument("--peers", nargs="*", choices=VARIANTS,
                        default=["openvino", "openvino-fp32"],
                        help="RapidOCR 3.10 variants to run in its own venv (none: --peers)")
    args = parser.parse_args()
    peer_python = rapidocr3_python() if args.peers else None  # made before the long part
    if args.set == "document":
        pages = real_pages(args.pdf, args.pages)
    elif args.set == "realistic":
        pages = make_realistic_pages(args.pages, seed=3)
    else:
        pages = make_pages(args.pages, seed=1)
    encoded = [cv2.imencode(".png", p.image)[1].tobytes() for p in pages]
    dirs = wheel_models.model_dirs(["PP-OCRv4_mobile_det", "PP-OCRv4_mobile_rec",
                                    "ch_ppocr_mobile_v2_cls_onnx"])
    layout = [LayoutTransform(args.concurrency)] if args.concurrency else []
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
        tmp = Path(tmp)
        reports = {"default": build(tmp / "default", dirs, False, list(layout), args.hosting),
                   "fast": build(tmp / "fast", dirs, True, [QuantizeTransform(), *layout],
                                 args.hosting)}
        # What the engines allow: each mode's engine calls on these pages, timed one engine
        # at a time on one thread (before any server runs, so nothing else competes).
        bound, bound_all, flops = {}, {}, {}
        for mode in reports:
            ocr, sent = record_inputs(tmp / mode, pages)
            flops[mode] = gflop_per_role(tmp / "default", ocr, sent, pages)
            bound[mode] = engine_ms(ocr, sent, pages)
            # One call at a time on every core: what an in-process reader's engines take.
            bound_all[mode] = engine_ms(ocr, sent, pages, threads=0)
            del sent
            print(f"{mode} engines, 1 thread: {bound[mode]} ms/page", file=sys.stderr, flush=True)
        cores, peak = peak_gflops()
        gflop = sum(flops["default"].values())
        floor = peak / gflop
        print(f"compute floor: {gflop:.1f} GFLOP/page, {peak:.0f} GFLOP/s, {floor:.2f} img/s",
              file=sys.stderr, flush=True)
        rapid = run_rapidocr(pages)
        print(f"RapidOCR: {rapid}", file=sys.stderr, flush=True)
        rows = [("RapidOCR 1.4.4 in-process, first pass", *rapid[0]),
                ("RapidOCR 1.4.4 in-process, second pass (baseline)", *rapid[1])]
        for variant in args.peers:
            try:
                info = {}
                peer = run_rapidocr3(peer_python, pages, variant, tmp, answer=info)
            except Exception as exc:  # the other rows are still worth printing
                print(f"RapidOCR 3 {variant} failed: {exc}", file=sys.stderr)
                continue
            print(f"{rapidocr3_label(variant, info)}: {peer}", file=sys.stderr, flush=True)
            rows += [(f"{rapidocr3_label(variant, info)}, {which} pass", *run)
                     for which, run in zip(("first", "second"), peer)]
        if args.paddlex_python:
            try:
                rows.append(("PaddleX 3.7.2 in-process", *run_paddlex(
                    args.paddlex_python, tmp / "default", pages, tmp)))
            except Exception as exc:  # the served rows are still worth printing
                print(f"PaddleX baseline failed: {exc}", file=sys.stderr)
        splits, served_best = {}, {}
        for mode in reports:
            served, splits[mode] = serve_mode(tmp / mode, pages, encoded, args.clients)
            served_best[mode] = served[-1][1]  # the highest client count, sizes seen
            rows += [(f"hpi-triton {mode}, {label}", *rest) for label, *rest in served]
            print(f"{mode}: {served}", file=sys.stderr, flush=True)
    base = rapid[1][0]
    # The strongest peers: RapidOCR 3.10 on OpenVINO, second pass (the targets).
    peer_ips = {label.split(", second pass")[0]: ips for label, ips, *_ in rows
                if label.startswith("RapidOCR 3") and label.endswith("second pass")}
    lines = sum(len(p.lines) for p in pages)
    print(f"# OCR benchmark — {machine()}; {time.strftime('%Y-%m-%d')}; {len(pages)} "
          f"{args.set} pages ({lines / len(pages):.1f} lines each, "
          f"{min(p.image.shape[1] for p in pages)}-{max(p.image.shape[1] for p in pages)} px "
          f"wide); gRPC; compute floor {gflop:.1f} GFLOP/page at {peak:.0f} GFLOP/s fp32 peak "
          f"= {floor:.2f} img/s")
    for mode, report in reports.items():
        engines = ", ".join(f"{m.name.split('_', 1)[1]}={m.backend}" for m in report.models)
        lay = report.transforms.get("layout", {}).get("chosen")
        quant = [q.get("chosen") for q in report.transforms.get("quantize", [])]
        print(f"#   {mode}: {engines}; layout {lay}; int8: {quant or 'none'}")
        tried = report.transforms.get("layout", {}).get("tried", [])
        if tried:
            # Each layout the build measured (on its own 8 rendered pages, seed 7003) against
            # the engines' bound on these pages: comparable between layouts, not absolute.
            ceiling = max(cores * 1e3 / sum(bound[mode].values()),
                          1e3 / sum(bound_all[mode].values()))
            print("#     layouts at --concurrency: " + "; ".join(
                f"{t.get('hosting', 'python')} {t['instances']}x{t['cpu_threads']} "
                f"{t['img_s']:.2f} img/s ({t['img_s'] / ceiling:.0%} of the bound)"
                for t in tried))
    peers = list(peer_ips)
    print("| run | img/s | p50 ms | p95 ms | CER (no spaces) | CER with spaces | word F1 | "
          "img/s vs RapidOCR 1.4.4 | " + " | ".join(f"vs {p}" for p in peers)
          + " | share of floor |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(peers) + "---|")
    for name, ips, p50, p95, read in rows:
        versus = "".join(f" {ips / peer_ips[p]:.2f}x |" for p in peers)
        print(f"| {name} | {ips:.2f} | {p50:.0f} | {p95:.0f} | {read['cer']:.2f}% | "
              f"{read['cer_spaces']:.2f}% | {read['word_f1']:.3f} | "
              f"{ips / base:.2f}x |{versus} {ips / floor:.0%} |")
    print(f"\nPer stage at {max(args.clients)} clients (ms per page from Triton's statistics; "
          f"the graph's compute includes waiting on its engine calls):")
    print("| mode | model | requests/page | queue | compute |")
    print("|---|---|---|---|---|")
    for mode, split in splits.items():
        for name in sorted(split):
            print(f"| {mode} | {name} | {split[name]['requests']:.2f} | "
                  f"{split[name]['queue_ms']:.1f} | {split[name]['compute_ms']:.1f} |")
    roles = list(bound["default"])
    print(f"\nWhat the engines allow: each engine alone on one thread, on the calls each mode's "
          f"graph makes for these pages (shapes warm), ms per page; the bound is what {cores} "
          f"cores would serve if the graph's own work, transport and contention cost nothing "
          f"({cores} x 1000 / the engines' ms per page). GFLOP/s per core: fp32 multiply-adds "
          f"of the calls / time (an int8 engine's counted as fp32); this CPU's fp32 peak is "
          f"{peak / cores:.0f} GFLOP/s per core.")
    print(f"The same calls one at a time on all {cores} cores bound it too (1000 / their ms "
          f"per page): the better of the two is the bound; against it the RapidOCR 3 peers.")
    print("| mode | " + " | ".join(f"{r} ms (GFLOP/s)" for r in roles)
          + " | engines ms/page, 1 thread | the same, all cores | bound img/s | bound vs "
          "RapidOCR 1.4.4 | " + " | ".join(f"bound vs {p}" for p in peers)
          + f" | served, {max(args.clients)} clients / bound |")
    print("|---|" + "---|" * (len(roles) + 5 + len(peers)))
    for mode, times in bound.items():
        total, total_all = sum(times.values()), sum(bound_all[mode].values())
        cells = " | ".join(f"{times[r]:.0f} ({flops[mode][r] / times[r] * 1e3:.1f})"
                           for r in roles)
        ceiling = max(cores * 1e3 / total, 1e3 / total_all)
        versus = "".join(f" {ceiling / peer_ips[p]:.2f}x |" for p in peers)
        print(f"| {mode} | {cells} | {total:.0f} | {total_all:.0f} | {ceiling:.2f} | "
              f"{ceiling / base:.2f}x |{versus} {served_best[mode] / ceiling:.0%} |")
    for q in reports["fast"].transforms.get("quantize", []):
        print(f"\nfast build's int8 gate: fp32 {q.get('fp32')}")
        for c in q.get("candidates", []):
            print(f"  {c}")


if __name__ == "__main__":
    main()
