"""A repository with every usable backend for each test model, served by a real tritonserver."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository
from hpi_triton.server import TritonServer

# Triton model name → (fixture model, backend asked for; None = let the build choose)
SERVED = {
    "det_paddle_infer": ("PP-OCRv4_mobile_det", "paddle_infer"),
    "det_openvino": ("PP-OCRv4_mobile_det", "openvino"),
    "rec_paddle_infer": ("PP-OCRv4_mobile_rec", "paddle"),  # PaddleX 3 spelling
    "rec_openvino": ("PP-OCRv4_mobile_rec", "openvino"),
    "mnv3_paddle_infer": ("pir", "paddle_infer"),
    "mnv3_onnx_runtime": ("pir", "onnx_runtime"),
    "mnv3_openvino": ("pir", "openvino"),
    "mnv3_selected": ("pir", None),  # Hpi.selected_backends.cpu = paddle_infer
    "cls_onnx_runtime": ("ch_ppocr_mobile_v2_cls_onnx", "onnxruntime"),
    "cls_openvino": ("ch_ppocr_mobile_v2_cls_onnx", "openvino"),
    "cls_measured": ("ch_ppocr_mobile_v2_cls_onnx", None),  # no Hpi selection: measured
}


@pytest.fixture(scope="session", autouse=True)
def quick_server_exit():
    """Tests keep HTTP clients open until they return; a stopping server waits its exit
    timeout (Triton's default 30 s) for such connections, which is idle time here."""
    TritonServer.default_exit_timeout = 5


@pytest.fixture(scope="session")
def model_paths(wheel_models, pir_model):
    return {**wheel_models, "pir": pir_model}


@pytest.fixture(scope="session")
def requests_all(model_paths):
    return [ModelRequest(name, model_paths[model], backend)
            for name, (model, backend) in SERVED.items()]


@pytest.fixture(scope="session")
def built(tmp_path_factory, requests_all, shared_cache_dir):
    out = tmp_path_factory.mktemp("repos") / "all"
    # Dynamic batching asked for (a CPU build leaves it off by default), so the batched
    # engine path is served and tested.
    report = build_repository(requests_all, BuildOptions(out=out, cache_dir=shared_cache_dir,
                                                         dynamic_batching="on"))
    return out, report


@pytest.fixture(scope="session")
def server(built, tmp_path_factory):
    repo, _ = built
    log = tmp_path_factory.mktemp("logs") / "tritonserver.log"
    with TritonServer(repo, 0, 0, 0, log_path=log) as running:
        yield running


@pytest.fixture
def fresh_cache(tmp_path) -> Path:
    return tmp_path / "cache"


_EXPORT_SEGNET = """
import sys, paddle
import paddle.nn as nn
import paddle.nn.functional as F

class TinySeg(nn.Layer):
    # The PaddleSeg export signature: x [N,3,H,W] float32 -> label map [N,H,W] int32
    # (PaddleX exports segmentation models with the argmax inside).
    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.head = nn.Conv2D(8, classes, 1)

    def forward(self, x):
        y = self.head(F.relu(self.stem(x)))
        y = F.interpolate(y, scale_factor=2, mode="bilinear")
        return paddle.argmax(y, axis=1).astype("int32")

paddle.seed(0)
model = TinySeg()
model.eval()
# Dynamic H and W, as PaddleX's PP-LiteSeg exports: PaddleX resizes keeping the aspect ratio.
paddle.jit.save(model, sys.argv[1] + "/inference",
                input_spec=[paddle.static.InputSpec([None, 3, None, None], "float32", "x")])
"""


@pytest.fixture(scope="module")
def segmentation_model(shared_cache_dir):
    import subprocess
    import sys

    import yaml

    target = shared_cache_dir / "models" / "TinySeg_dynamic_random"
    if not (target / "inference.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        # paddle.jit.save reads the Layer's source, so the script must be a real file.
        script = shared_cache_dir / "export_tinyseg.py"
        script.write_text(_EXPORT_SEGNET)
        subprocess.run([sys.executable, str(script), str(target)], check=True,
                       capture_output=True)
    shapes = {"x": [[1, 3, 64, 64], [1, 3, 256, 256], [1, 3, 1024, 1024]]}
    config = {"Global": {"model_name": "PP-LiteSeg-T"},
              "Hpi": {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": shapes},
                                          "tensorrt": {"dynamic_shapes": shapes}}},
              "Deploy": {"model": "inference.json", "params": "inference.pdiparams",
                         "transforms": [{"type": "Resize", "target_size": [256, 256]},
                                        {"type": "Normalize", "mean": [0.5, 0.5, 0.5],
                                         "std": [0.5, 0.5, 0.5]}]}}
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target
