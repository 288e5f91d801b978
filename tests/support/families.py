"""One PaddleX model dir per model family of the supported-models table (random weights).

Each family gets a network from :mod:`tests.support.family_nets` (the real ``paddle.vision``
architecture where Paddle ships it, else a small network of the family's characteristic blocks
with the family's exact export inputs/outputs) and the ``inference.yml`` PaddleX writes for that
family's reference model (PaddleClas / PaddleDetection / PaddleSeg export of the PaddleX configs:
resize sizes, interpolation and backend, normalisation, Pad, draw_threshold, label_list length).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import cv2
import numpy as np
import yaml

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
            "scale": 0.00392156862745098, "order": "", "channel_num": 3}


@dataclass
class Family:
    name: str  # the family, as in PaddleX's supported-models table
    model_name: str  # the PaddleX model whose inference.yml is used
    pipeline: str
    net: str  # the network in tests/family_nets.py
    kind: str  # "architecture" (paddle.vision, random weights) or "signature" network
    backend: str  # asked for first at build time; the others listed as fallbacks
    inputs: Optional[List[str]] = None  # detection input names in export order
    config: Dict = field(default_factory=dict)

    @property
    def served_name(self) -> str:
        return self.name.replace("+", "p").replace(" ", "_")


def _classification(resize_short=256, **resize) -> Dict:
    return {"PreProcess": {"transform_ops": [
        {"ResizeImage": {"resize_short": resize_short, **resize}},
        {"CropImage": {"size": 224}}, {"NormalizeImage": dict(IMAGENET)}, {"ToCHWImage": None}]},
        "PostProcess": {"Topk": {"topk": 5, "label_list": [f"class_{i}" for i in range(1000)]}}}


def _detection(size, interp=2, keep_ratio=False, normalize=None, pad=False, mask=False) -> Dict:
    ops = [{"type": "Resize", "target_size": [size, size], "keep_ratio": keep_ratio,
            "interp": interp}]
    ops.append({"type": "NormalizeImage", **(normalize or {
        "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "norm_type": "none"}), "is_scale": True})
    if pad:
        ops.append({"type": "Pad", "size": [size, size], "fill_value": [114.0, 114.0, 114.0]})
    ops.append({"type": "Permute"})
    config = {"mode": "paddle", "draw_threshold": 0.5, "metric": "COCO",
              "use_dynamic_shape": False, "Preprocess": ops,
              "label_list": [f"object_{i}" for i in range(4)]}
    if mask:
        config["mask"] = True
    return config


def _segmentation() -> Dict:
    return {"Deploy": {"model": "inference.json", "params": "inference.pdiparams",
                       "transforms": [{"type": "Normalize"}], "input_shape": [None, 3, None, None],
                       "output_op": "argmax", "output_dtype": "int32"}}


_BICUBIC_PIL = {"interpolation": "bicubic", "backend": "pil"}
_MEAN_STD = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "is_scale": True}

FAMILIES = [
    # image_classification: x [N,3,224,224] -> softmax [N,1000]
    Family("ResNet", "ResNet50_vd", "image_classification", "ResNet18", "architecture",
           "onnx_runtime", config=_classification()),
    Family("MobileNetV1", "MobileNetV1_x0_25", "image_classification", "MobileNetV1",
           "architecture", "onnx_runtime", config=_classification()),
    Family("MobileNetV2", "MobileNetV2_x0_5", "image_classification", "MobileNetV2",
           "architecture", "openvino", config=_classification()),
    Family("PP-LCNetV2", "PP-LCNetV2_base", "image_classification", "PP-LCNetV2", "signature",
           "onnx_runtime", config=_classification()),
    Family("ConvNeXt", "ConvNeXt_tiny", "image_classification", "ConvNeXt", "signature",
           "onnx_runtime", config=_classification(**_BICUBIC_PIL)),
    Family("SwinTransformer", "SwinTransformer_tiny_patch4_window7_224", "image_classification",
           "SwinTransformer", "signature", "openvino", config=_classification(**_BICUBIC_PIL)),
    Family("PP-HGNetV2", "PP-HGNetV2-B0", "image_classification", "PP-HGNetV2", "signature",
           "onnx_runtime", config=_classification(232, **_BICUBIC_PIL)),
    Family("CLIP_ViT", "CLIP_vit_base_patch16_224", "image_classification", "CLIP_ViT",
           "signature", "onnx_runtime", config=_classification()),
    # object_detection: boxes [K,6] + box count, NMS inside
    Family("PP-YOLOE_plus", "PP-YOLOE_plus-S", "object_detection", "det", "signature",
           "onnx_runtime", ["image", "scale_factor"], _detection(640)),
    Family("YOLOX", "YOLOX-S", "object_detection", "det", "signature", "onnx_runtime",
           ["image", "scale_factor"],
           _detection(640, interp=1, keep_ratio=True, pad=True, normalize={
               "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "norm_type": "none",
               "is_scale": False})),
    Family("YOLOv3", "YOLOv3-DarkNet53", "object_detection", "det", "signature", "openvino",
           ["im_shape", "image", "scale_factor"], _detection(608, normalize=_MEAN_STD)),
    Family("RT-DETR", "RT-DETR-L", "object_detection", "det", "signature", "paddle_infer",
           ["im_shape", "image", "scale_factor"], _detection(640)),
    Family("PicoDet", "PicoDet-S", "object_detection", "det", "signature", "onnx_runtime",
           ["image", "scale_factor"], _detection(320, normalize=_MEAN_STD)),
    # semantic_segmentation: x [N,3,H,W] (any size: Normalize only) -> labels [N,H,W] int32
    Family("Deeplabv3", "Deeplabv3_Plus-R50", "semantic_segmentation", "Deeplabv3_Plus",
           "signature", "onnx_runtime", config=_segmentation()),
    Family("PP-LiteSeg", "PP-LiteSeg-T", "semantic_segmentation", "PP-LiteSeg", "signature",
           "openvino", config=_segmentation()),
    Family("OCRNet", "OCRNet_HRNet-W18", "semantic_segmentation", "OCRNet", "signature",
           "onnx_runtime", config=_segmentation()),
    Family("SeaFormer", "SeaFormer_tiny", "semantic_segmentation", "SeaFormer", "signature",
           "onnx_runtime", config=_segmentation()),
    Family("SegFormer", "SegFormer-B0", "semantic_segmentation", "SegFormer", "signature",
           "paddle_infer", config=_segmentation()),
    # instance_segmentation: boxes [K,6] + count + masks [K,H,W] int32 at the source size
    Family("Mask-RT-DETR", "Mask-RT-DETR-S", "instance_segmentation", "det", "signature",
           "paddle_infer", ["im_shape", "image", "scale_factor"], _detection(640, mask=True)),
]

_KIND = {"image_classification": "classification", "semantic_segmentation": "segmentation",
         "object_detection": "detection", "instance_segmentation": "instance_segmentation"}


def uvdoc_model_dir(root: Path) -> Path:
    """A UVDoc-signature network (random weights, near-identity grid) as a PaddleX dir: proves
    the DocUnwarping plumbing, not unwarping quality (no UVDoc weights ship in a wheel)."""
    target = Path(root) / "UVDoc_signature_random"
    if not (target / "inference.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        _export([{"name": "UVDoc", "kind": "unwarping", "inputs": None, "target": str(target),
                  "spec_size": None}])
    config = {"Global": {"model_name": "UVDoc"},
              "PreProcess": {"transform_ops": [{"Normalize": {"mean": 0.0, "std": 1.0,
                                                               "scale": 0.00392156862745098}},
                                               {"ToCHWImage": None}]}}
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


def layout_model_dir(root: Path) -> Path:
    """A layout detector (:class:`family_nets.LayoutStandInNet`: four fixed regions labelled
    title, text, table, seal) as a PaddleX dir with PicoDet-S's inference.yml: proves the
    layout pipelines' plumbing and parity with PaddleX, not layout quality."""
    target = Path(root) / "LayoutStandIn_fixed"
    if not (target / "inference.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        _export([{"name": "LayoutStandIn", "kind": "layout", "inputs": None,
                  "target": str(target), "spec_size": None}])
    config = {"Global": {"model_name": "PicoDet-S"},
              "Preprocess": [{"type": "Resize", "target_size": [320, 320], "keep_ratio": False,
                              "interp": 2},
                             {"type": "NormalizeImage", "mean": [0.485, 0.456, 0.406],
                              "std": [0.229, 0.224, 0.225], "is_scale": True},
                             {"type": "Permute"}],
              "label_list": ["text", "title", "table", "seal"], "draw_threshold": 0.5}
    (target / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return target


# The OCR models no wheel ships, each with its export signature (tests/family_nets.py) and the
# inference.yml PaddleX writes for it: name -> (kind, width stride of the recognizer).
OCR_MODELS = {"PP-OCRv4_server_det": ("text_det", None), "PP-OCRv4_server_rec": ("text_rec", 8),
              "ch_SVTRv2_rec": ("text_rec", 4), "ch_RepSVTR_rec": ("text_rec", 8)}


def ocr_model_dirs(root: Path, characters) -> Dict[str, Path]:
    """PaddleX dirs of :data:`OCR_MODELS` (random weights; the detector a fixed ink finder),
    recognizers with ``characters`` (ppocr_keys_v1, 6623 + blank + space = 6625 classes)."""
    from hpi_triton.wheel_models import _det_yml, _rec_yml

    root = Path(root)
    dirs = {name: root / f"{name}_signature" for name in OCR_MODELS}
    jobs = [{"name": name, "kind": kind, "inputs": None, "target": str(dirs[name]),
             "spec_size": None, "stride": stride}
            for name, (kind, stride) in OCR_MODELS.items()
            if not (dirs[name] / "inference.json").is_file()]
    for job in jobs:
        Path(job["target"]).mkdir(parents=True, exist_ok=True)
    if jobs:
        _export(jobs)
    for name, (kind, _) in OCR_MODELS.items():
        config = _det_yml(name) if kind == "text_det" else _rec_yml(name, characters)
        (dirs[name] / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False,
                                                                  allow_unicode=True))
    return dirs


def _export(jobs) -> None:
    script = Path(__file__).with_name("family_nets.py")
    done = subprocess.run([sys.executable, str(script), json.dumps(jobs)],
                          capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"exporting test networks failed:\n{done.stderr[-3000:]}")


def family_model_dirs(root: Path) -> Dict[str, Path]:
    """Export the families' networks not yet under ``root`` (one Python process for all) and
    write each ``inference.yml``; family name → model dir."""
    root = Path(root)
    dirs = {f.name: root / f"{f.served_name}_random" for f in FAMILIES}
    jobs = []
    for family in FAMILIES:
        target = dirs[family.name]
        if not (target / "inference.json").is_file():
            target.mkdir(parents=True, exist_ok=True)
            size = family.config.get("Preprocess", [{}])[0].get("target_size")
            jobs.append({"name": family.net, "kind": _KIND[family.pipeline],
                         "inputs": family.inputs, "target": str(target), "spec_size": size})
    if jobs:
        _export(jobs)
    for family in FAMILIES:
        config = {"Global": {"model_name": family.model_name}, **family.config}
        (dirs[family.name] / "inference.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return dirs


def scene(height=360, width=480, seed=0):
    """A BGR image with structure (gradient, shapes, text) rather than noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = np.linspace(40, 220, width, dtype=np.uint8)[None, :, None]
    for _ in range(6):
        x, y = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 60))
        color = [int(c) for c in rng.integers(0, 255, 3)]
        cv2.rectangle(image, (x, y), (x + int(rng.integers(20, 120)),
                                      y + int(rng.integers(20, 120))), color, -1)
        cv2.circle(image, (int(rng.integers(0, width)), int(rng.integers(0, height))),
                   int(rng.integers(10, 50)), color[::-1], -1)
    cv2.putText(image, "hpi-triton", (20, height - 30), cv2.FONT_HERSHEY_SIMPLEX, 1.2,
                (255, 255, 255), 2)
    return image
