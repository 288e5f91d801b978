"""Pre- and post-processing of the vision pipelines, driven by each model's inference.yml.

numpy + OpenCV only; shipped in the vision graphs' runtime package. Semantics
follow PaddleX: images are read as RGB; ResizeImage (resize_short or size), CropImage (center),
NormalizeImage (scale, mean, std), ToCHWImage; Topk with label_list.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..common.engine import Engine
from ..common.image_io import MAX_PIXELS, ImageError, affine_coefficients, normalize_chw
from ..common.parameters import Parameter, ParameterError, ParameterSet
from ..common.settings import GraphSettings

__all__ = ["TASKS", "ParameterError", "VisionSettings", "VisionTask", "classes",
           "coerce_parameters", "deferred_scaling", "detect_layout", "postprocess", "preprocess",
           "run_task", "task"]

_INTERPOLATION = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR,
                  "CUBIC": cv2.INTER_CUBIC, "BICUBIC": cv2.INTER_CUBIC,
                  "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}


def resize(image: np.ndarray, size, interpolation: str = "LINEAR",
           backend: str = "cv2") -> np.ndarray:
    """Resize to ``size`` (w, h) as PaddleX does: OpenCV, or Pillow where inference.yml says
    ``backend: pil`` (ConvNeXt, Swin, CLIP, ...: Pillow antialiases when shrinking, so the
    two differ by more than rounding)."""
    interpolation = str(interpolation).upper()
    if str(backend).lower() == "pil":
        from PIL import Image

        pil = {"NEAREST": Image.NEAREST, "LINEAR": Image.BILINEAR, "BILINEAR": Image.BILINEAR,
               "BICUBIC": Image.BICUBIC, "CUBIC": Image.BICUBIC, "BOX": Image.BOX,
               "LANCZOS4": Image.LANCZOS}
        return np.asarray(Image.fromarray(image).resize(tuple(size), pil[interpolation]))
    return cv2.resize(image, tuple(size), interpolation=_INTERPOLATION[interpolation])


class PreprocessError(ImageError):
    """The image does not fit the model's pre-processing (e.g. smaller than the crop)."""


def parse_scale(value) -> float:
    """A NormalizeImage scale: a number or PaddleX's string form such as ``"1./255."``."""
    if isinstance(value, str):
        numerator, _, denominator = value.partition("/")
        return float(numerator) / float(denominator or 1)
    return float(value)


_CLASSIFICATION_NORMALIZE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                             "scale": 1 / 255.0}


def classification_preprocess(rgb: np.ndarray, ops: List[Dict],
                              defer_normalize: bool = False) -> np.ndarray:
    """Apply PaddleX classification transform_ops to one RGB HWC uint8 image → CHW float32
    (``defer_normalize``: CHW uint8, NormalizeImage left to the engine model; see
    :func:`deferred_scaling`)."""
    image = rgb
    chw = deferred = False
    for op in ops:
        (name, args), = op.items()
        args = args or {}
        if deferred and name in ("ResizeImage", "CropImage"):
            # the engine model's affine would land after this resize/crop, not before it
            raise _cannot_defer("image_classification")
        if name == "ResizeImage":
            h, w = image.shape[:2]
            if args.get("resize_short"):
                scale = args["resize_short"] / min(h, w)
                size = (round(w * scale), round(h * scale))
            else:
                size = args["size"]
                size = (size, size) if isinstance(size, int) else tuple(size)
            if size != (w, h):
                image = resize(image, size, args.get("interpolation", "LINEAR"),
                               args.get("backend", "cv2"))
        elif name == "CropImage":
            size = args.get("size", 224)
            cw, ch = (size, size) if isinstance(size, int) else size
            h, w = image.shape[:2]
            if w < cw or h < ch:
                raise PreprocessError(f"image ({w}x{h}) is smaller than the crop ({cw}x{ch})")
            x1, y1 = max(0, (w - cw) // 2), max(0, (h - ch) // 2)
            image = image[y1:y1 + ch, x1:x1 + cw]
        elif name == "NormalizeImage" and defer_normalize:
            deferred = True
        elif name == "NormalizeImage" and not chw:
            image = normalize_chw(image, args.get("mean", _CLASSIFICATION_NORMALIZE["mean"]),
                                  args.get("std", _CLASSIFICATION_NORMALIZE["std"]),
                                  parse_scale(args.get("scale",
                                                       _CLASSIFICATION_NORMALIZE["scale"])))
            chw = True  # normalize_chw returns CHW; a following ToCHWImage has nothing to do
        elif name == "ToCHWImage" and not chw:
            image = image.transpose(2, 0, 1)
            chw = True
        # Other ops (DecodeImage, KeepKeys, ...) are training-time or already done.
    if not chw:
        image = image.transpose(2, 0, 1)
    return np.ascontiguousarray(image, dtype=np.uint8 if defer_normalize else np.float32)


def _cannot_defer(task: str) -> ValueError:
    return ValueError(f"pipeline {task}: this pre-processing cannot leave its normalisation "
                      f"to the engine model")


def deferred_scaling(name: str, ops: List[Dict]):
    """Per-channel (alpha, offset) when pipeline ``name``'s pre-processing, its image ``ops``
    (classification's ``preprocess``, segmentation's ``transforms``), ends with the affine
    ``x * alpha - offset`` of :func:`normalize_chw` on a CHW uint8 image, else None.

    The served graph then sends the engine model uint8 pixels (a quarter of float32's bytes
    through Triton's copies) and the engine model applies the affine (bit-identical float32
    arithmetic): classification whose NormalizeImage follows every ResizeImage / CropImage,
    and semantic segmentation (Normalize always comes after Resize there). Takes the ops, not
    the graph's settings: the build asks before the engine model (and so the settings) exists.
    """
    found = TASKS.get(name)
    return found.deferred_scaling(ops) if found is not None else None


def classes(index: np.ndarray, scores: np.ndarray, labels: Sequence[str] | None) -> Dict:
    """PaddleX's classification result for the classes ``index`` with their (rounded)
    ``scores``: class_ids, scores, label_names (the id where the label list has none)."""
    names = [str(labels[i]) if labels and i < len(labels) else str(int(i)) for i in index]
    return {"class_ids": index.tolist(), "scores": [float(s) for s in scores],
            "label_names": names}


def topk(probs: np.ndarray, k: int, labels: Sequence[str] | None) -> Dict:
    """PaddleX Topk for one image: class_ids, scores (5 decimals), label_names."""
    k = max(1, min(int(k), probs.shape[-1]))
    index = probs.argsort()[-k:][::-1].astype(int)
    return classes(index, np.around(probs[index], decimals=5), labels)


# --- parameters and tasks --------------------------------------------------------------------

#: What every vision task's requests may set besides their own.
COMMON = ParameterSet.of(MAX_PIXELS)


class VisionTask:
    """One vision pipeline task: its name, its one role (PaddleX SubModules name), its typed
    per-request parameters, the outputs that travel as tensors beside the JSON result, and its
    pre- and post-processing. The served pre/post models and the build both use these."""

    #: The pipeline's name (``--pipeline``) and the role its one model plays.
    name = ""
    role = ""
    #: The parameters a request may set (besides :data:`COMMON`).
    parameters: ParameterSet = ParameterSet()
    #: name → (dtype, dims) of outputs served as tensors (``None``: the pipeline's choice).
    array_outputs: Dict = {}
    #: How many of the engine's first outputs the post-processing reads (None: all).
    reads_outputs = None
    #: The task's own :class:`VisionSettings` fields: those the build must write, and those
    #: it may (left out where the model says nothing, e.g. no label list).
    required_settings: tuple = ()
    optional_settings: tuple = ()

    @functools.cached_property
    def request_parameters(self) -> ParameterSet:
        """What a request may set: :attr:`parameters` and :data:`COMMON`."""
        return self.parameters | COMMON

    def deferred_scaling(self, ops: List[Dict]):
        """(alpha, offset) the engine model may apply to uint8 pixels after the image ``ops``,
        else None."""
        return None

    def preprocess(self, settings: VisionSettings, params: Dict, rgb: np.ndarray,
                   deferred: bool, context: Dict):
        """The engine's inputs for one RGB image (``context`` gets what postprocess needs)."""
        raise NotImplementedError

    def postprocess(self, settings: VisionSettings, params: Dict,
                    outputs: Sequence[np.ndarray], context: Dict) -> Dict:
        """The engine's outputs → PaddleX's result fields."""
        raise NotImplementedError


class ImageClassification(VisionTask):
    """PaddleX image_classification: transform_ops → logits → Topk."""

    name, role = "image_classification", "ImageClassification"
    parameters = ParameterSet.of(Parameter(
        "topk", int, minimum=1, serving="topk",
        description="How many classes, highest score first (default: inference.yml's Topk)"))
    reads_outputs = 1
    required_settings, optional_settings = ("preprocess",), ("labels",)

    def deferred_scaling(self, ops):
        names = [next(iter(op)) for op in ops]
        geometric = [i for i, n in enumerate(names) if n in ("ResizeImage", "CropImage")]
        if "NormalizeImage" not in names:
            return [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]
        position = names.index("NormalizeImage")
        if geometric and position < max(geometric):
            return None
        args = ops[position]["NormalizeImage"] or {}
        return affine_coefficients(args.get("mean", _CLASSIFICATION_NORMALIZE["mean"]),
                                   args.get("std", _CLASSIFICATION_NORMALIZE["std"]),
                                   parse_scale(args.get("scale",
                                                        _CLASSIFICATION_NORMALIZE["scale"])))

    def preprocess(self, settings, params, rgb, deferred, context):
        return [classification_preprocess(rgb, settings.preprocess, deferred)[None]]

    def postprocess(self, settings, params, outputs, context):
        return topk(np.asarray(outputs[0])[0], params["topk"], settings.labels)


class ObjectDetection(VisionTask):
    """PaddleX object_detection: PicoDet heads decoded + NMS here, or NMS inside the model."""

    name, role = "object_detection", "ObjectDetection"
    parameters = ParameterSet.of(Parameter(
        "threshold", float, minimum=0, maximum=1, serving="threshold",
        description="Boxes scoring below this are dropped (default: inference.yml's "
                    "draw_threshold)"))
    required_settings = ("preprocess", "inputs", "head")
    optional_settings = ("labels", "nms", "fpn_stride")

    def preprocess(self, settings, params, rgb, deferred, context):
        feeds, scale = detection_preprocess(rgb, settings.preprocess, settings.inputs)
        context["scale"] = [float(v) for v in scale]
        context["input_hw"] = [int(v) for v in feeds[settings.inputs.index("image")]
                               .shape[2:]]
        return feeds

    def _kept_rows(self, settings, params, outputs, context):
        if settings.head == "picodet":
            scale = context["scale"]
            rows = picodet_decode(outputs, context["input_hw"], settings.fpn_stride,
                                  settings.nms or {}, params["threshold"])
            rows[:, 2:] /= np.array([scale[1], scale[0], scale[1], scale[0]])
        else:  # NMS inside: [K, 6] rows in source-image coordinates (scale_factor given)
            rows = outputs[0].reshape(-1, 6)[: int(outputs[1].reshape(-1)[0])]
        # PaddleX's object_detection drops page-sized "image" boxes; instance_segmentation not
        return rows, kept_detections(rows, params["threshold"], tuple(context["source_hw"]),
                                     settings.labels, self.name == "object_detection")

    def postprocess(self, settings, params, outputs, context):
        outputs = [np.asarray(o) for o in outputs]
        rows, kept = self._kept_rows(settings, params, outputs, context)
        return {"boxes": detection_boxes(rows[kept], settings.labels,
                                         tuple(context["source_hw"]))}


class InstanceSegmentation(ObjectDetection):
    """PaddleX instance_segmentation: detections plus one mask per kept box."""

    name, role = "instance_segmentation", "InstanceSegmentation"
    array_outputs = {"masks": ("uint8", [-1, -1, -1])}

    def postprocess(self, settings, params, outputs, context):
        outputs = [np.asarray(o) for o in outputs]
        rows, kept = self._kept_rows(settings, params, outputs, context)
        source_hw = tuple(context["source_hw"])
        return {"boxes": detection_boxes(rows[kept], settings.labels, source_hw),
                "masks": instance_masks(outputs[2], kept, source_hw)}


class SemanticSegmentation(VisionTask):
    """PaddleSeg semantic_segmentation: transforms → logits or labels → a label map."""

    name, role = "semantic_segmentation", "SemanticSegmentation"
    parameters = ParameterSet.of(Parameter(
        "target_size", int, minimum=32, also=(-1,), serving="targetSize",
        description="Resize to this size before the model (-1: inference.yml's)"))
    array_outputs = {"pred": (None, [-1, -1])}  # dtype: the pipeline's label_dtype
    reads_outputs = 1
    required_settings = ("transforms", "label_dtype")

    def deferred_scaling(self, ops):
        norm = next((t for t in ops if t.get("type") == "Normalize"), {})
        return affine_coefficients(norm.get("mean", 0.5), norm.get("std", 0.5), 1 / 255.0)

    def preprocess(self, settings, params, rgb, deferred, context):
        return [segmentation_preprocess(rgb, settings.transforms, params.get("target_size"),
                                        deferred)[None]]

    def postprocess(self, settings, params, outputs, context):
        return {"pred": segmentation_postprocess(np.asarray(outputs[0]),
                                                 tuple(context["source_hw"]),
                                                 settings.label_dtype)}


#: Every vision task by pipeline name: these four, and each task a sibling module of this
#: package declares with :func:`register_task` (found below, no list to edit).
TASKS: Dict[str, VisionTask] = {}

# Tasks whose pre-processing may end with a normalisation the engine model takes over
# (:func:`deferred_scaling`); the build asks for uint8 engine inputs for these only.
DEFERRABLE_TASKS: tuple = ()


def register_task(found: VisionTask) -> VisionTask:
    """Serve ``found`` as the vision task of pipeline ``found.name``."""
    global DEFERRABLE_TASKS
    if found.name in TASKS and type(TASKS[found.name]) is not type(found):
        raise ValueError(f"vision task {found.name!r} is declared twice")
    TASKS[found.name] = found
    DEFERRABLE_TASKS = tuple(name for name, kind in TASKS.items()
                             if type(kind).deferred_scaling is not VisionTask.deferred_scaling)
    return found


for _task in (ImageClassification(), ObjectDetection(), SemanticSegmentation(),
              InstanceSegmentation()):
    register_task(_task)


def task(name: str) -> VisionTask:
    """The task of pipeline ``name``; an unknown name is refused naming the known ones."""
    if name not in TASKS:
        raise ValueError(f"task {name!r} is not supported by this graph; known: "
                         f"{sorted(TASKS)}")
    return TASKS[name]


@dataclass
class VisionSettings(GraphSettings):
    """A vision graph's settings: the contract between the build, which writes them
    (``ensembles/vision.py``: ``VisionPipeline.graph_settings``; document graphs embed a
    detection one as their ``layout``), and the pre/post-processing here, which reads them.
    Defined where they are read; JSON through :meth:`to_json` / :meth:`from_json`.

    Besides the common fields, each task family has its own (flat, so a document graph's
    ``layout`` JSON reads the same as an object detection graph's); each :class:`VisionTask`
    declares which it requires and which it may carry, and any other is refused.

    Attributes:
        task: The pipeline's name (a key of :data:`TASKS`).
        model: The engine call ``[model, input names, output names]``.
        params: The per-request parameters' defaults (the build's, inference.yml's).
        labels: Class names by id (classification, detection), where the model has them.
        preprocess: Classification's ``PreProcess.transform_ops`` (``{Name: args}`` each) or
            detection's PaddleDetection ``Preprocess`` (``{type, ...}`` each).
        inputs: Detection: the engine's input names (``image``, ``im_shape``,
            ``scale_factor``), in its order.
        nms: Detection: inference.yml's ``NMS`` (used where the graph runs NMS itself).
        head: Detection: ``picodet`` (score/box heads decoded here) or ``nms_inside``.
        fpn_stride: Detection with a ``picodet`` head: one stride per head.
        transforms: Semantic segmentation: PaddleSeg's ``Deploy.transforms``.
        label_dtype: Semantic segmentation: the label map's dtype (``uint8`` / ``int32``).
    """

    task: str
    model: list
    params: Dict[str, object]
    labels: Optional[List[str]] = None
    preprocess: Optional[List[Dict]] = None
    inputs: Optional[List[str]] = None
    nms: Optional[Dict[str, object]] = None
    head: Optional[str] = None
    fpn_stride: Optional[List[int]] = None
    transforms: Optional[List[Dict]] = None
    label_dtype: Optional[str] = None

    def __post_init__(self):
        """Refuse fields the task does not declare, and a required one left out.

        Raises:
            ValueError: an unknown task, or fields that do not fit it (the repository was
                built by another hpi-triton version).
        """
        kind = task(self.task)
        own = [f.name for f in fields(self) if f.name not in ("task", "model", "params")]
        given = {name for name in own if getattr(self, name) is not None}
        foreign = sorted(given - set(kind.required_settings) - set(kind.optional_settings))
        missing = [name for name in kind.required_settings if name not in given]
        problems = ([f"fields it does not take: {foreign}"] if foreign else []) + \
            ([f"fields missing: {missing}"] if missing else [])
        if problems:
            raise ValueError(f"VisionSettings of task {self.task!r}: {'; '.join(problems)}; "
                             f"rebuild the repository with this hpi-triton")


def coerce_parameters(values: Dict, defaults: Dict) -> Dict:
    """Defaults (set at build time) updated with checked request parameters."""
    found = TASKS.get(defaults.get("task", ""))
    spec = found.request_parameters if found is not None else COMMON
    return spec.coerce(values, defaults)


def preprocess(settings: VisionSettings, params: Dict, rgb: np.ndarray,
               deferred: bool = False):
    """One RGB image → (the engine's inputs in its input order, context for
    :func:`postprocess`). The context is JSON-serialisable: it travels between the served
    pre- and post-processing models. ``deferred``: the image input stays CHW uint8, its
    normalisation (:func:`deferred_scaling`) left to the engine model. ``settings`` may also
    be their JSON (as for every function here that takes them)."""
    settings = VisionSettings.from_json(settings)
    kind = task(settings.task)
    context = {"source_hw": [int(v) for v in rgb.shape[:2]]}
    # Per request, only what is free to check: classification_preprocess refuses an order
    # of ops the engine model's affine cannot follow (deferred_scaling's rule) as it meets it.
    if deferred and kind.name not in DEFERRABLE_TASKS:
        raise _cannot_defer(kind.name)
    return kind.preprocess(settings, params, rgb, deferred, context), context


def used_outputs(settings: VisionSettings, count: int) -> int:
    """How many of the engine's ``count`` outputs :func:`postprocess` reads (the first
    ones): classification and segmentation read the first only."""
    reads = task(VisionSettings.from_json(settings).task).reads_outputs
    return count if reads is None else reads


def postprocess(settings: VisionSettings, params: Dict, outputs: Sequence[np.ndarray],
                context: Dict) -> Dict:
    """The engine's outputs (at least :func:`used_outputs` of them) + the context from
    :func:`preprocess` → PaddleX's result fields."""
    settings = VisionSettings.from_json(settings)
    return task(settings.task).postprocess(settings, params, outputs, context)


def run_task(settings: VisionSettings, params: Dict, rgb: np.ndarray, engine: Engine) -> Dict:
    """Pre-process, ``engine.run(*inputs) -> outputs``, post-process, for one RGB image:
    the served graph's three models in one call (document graphs' layout detection,
    in-process baselines and tests)."""
    settings = VisionSettings.from_json(settings)
    feeds, context = preprocess(settings, params, rgb)
    return postprocess(settings, params, list(engine.run(*feeds)), context)


def detect_layout(settings: VisionSettings, bgr: np.ndarray, threshold: float,
                  engine: Engine) -> Dict:
    """A document graph's layout detection: the detection task of ``settings`` (or their
    JSON, as the document graphs' settings carry them) on a BGR page at score ``threshold``
    (PaddleX's layout models read RGB)."""
    settings = VisionSettings.from_json(settings)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return run_task(settings, {**settings.params, "threshold": threshold}, rgb, engine)


#: PaddleX 3.7 SegPredictor.build_resize's defaults for what a Deploy Resize leaves unsaid.
SEG_RESIZE_DEFAULTS = {"keep_ratio": True, "size_divisor": 32, "interp": "LINEAR"}


def segmentation_preprocess(rgb: np.ndarray, transforms: List[Dict],
                            target_size: int | None = None,
                            defer_normalize: bool = False) -> np.ndarray:
    """PaddleX semantic segmentation: Resize (keep_ratio, size_divisor) from Deploy.transforms
    or ``target_size`` (-1 = as is), Normalize (scale 1/255, mean/std default 0.5), ToCHW
    (``defer_normalize``: CHW uint8, Normalize left to the engine model).

    A Resize that leaves keep_ratio / size_divisor / interp unsaid gets PaddleX's SegPredictor
    defaults (its ``build_resize``: keep_ratio True, size_divisor 32, LINEAR), not PaddleSeg's
    (keep_ratio False): served label maps equal PaddleX's (``hpi-triton compare``)."""
    op = next((t for t in transforms if t.get("type") == "Resize"), None) or {}
    norm = next((t for t in transforms if t.get("type") == "Normalize"), {})
    image = rgb
    size = target_size if target_size is not None else op.get("target_size", -1)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size != (-1, -1):
        h, w = image.shape[:2]
        if op.get("keep_ratio", SEG_RESIZE_DEFAULTS["keep_ratio"]):
            scale = min(max(size) / max(w, h), min(size) / min(w, h))
            size = (round(w * scale), round(h * scale))
        divisor = op.get("size_divisor", SEG_RESIZE_DEFAULTS["size_divisor"])
        if divisor:
            size = tuple(int(math.ceil(v / divisor) * divisor) for v in size)
        image = resize(image, tuple(int(v) for v in size), op.get("interp", "LINEAR"))
    if defer_normalize:
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    return normalize_chw(image, norm.get("mean", 0.5), norm.get("std", 0.5), 1 / 255.0)


def segmentation_postprocess(pred: np.ndarray, source_hw, dtype: str = "int32") -> np.ndarray:
    """Label map at the input size (nearest), from [1,H,W] labels or [1,C,H,W] logits, as
    ``dtype`` (the served pipeline's ``label_dtype``)."""
    if pred.ndim == 4:
        pred = pred.argmax(axis=1)
    labels = pred[0]
    # Labels the engine model already narrowed to uint8 (uint8_outputs) need no range check.
    if (dtype == "uint8" and labels.dtype != np.uint8 and labels.size
            and not 0 <= int(labels.min()) <= int(labels.max()) <= 255):
        raise ValueError(f"the model produced labels {int(labels.min())}..{int(labels.max())}, "
                         f"which a uint8 label map cannot hold; rebuild the pipeline with "
                         f"--param label_dtype=int32")
    labels = labels.astype(dtype, copy=False)
    h, w = source_hw
    if labels.shape != (h, w):
        labels = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return labels



# --- object detection ------------------------------------------------------------------------

def detection_preprocess(rgb: np.ndarray, ops: List[Dict], input_names: List[str]):
    """PaddleDetection Preprocess (Resize, NormalizeImage, Permute) → the model's inputs in
    ``input_names`` order (image, im_shape, scale_factor), and (scale_h, scale_w)."""
    image, is_chw = rgb, False  # HWC uint8 until NormalizeImage / Pad make it CHW float32
    h0, w0 = rgb.shape[:2]
    for op in ops:
        kind = op.get("type")
        if kind == "Resize":
            if is_chw:
                raise ValueError("Resize after NormalizeImage/Pad is not supported")
            interp = [cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA,
                      cv2.INTER_LANCZOS4][int(op.get("interp", 2))]
            resized_h, resized_w = _resize_hw(op, h0, w0)
            image = cv2.resize(image, (resized_w, resized_h), interpolation=interp)
        elif kind == "NormalizeImage":
            scale = 1 / 255.0 if op.get("is_scale", True) else 1.0
            # As PaddleX: an absent or "none" norm_type means mean/std normalisation.
            if (op.get("norm_type") or "none") in ("none", "mean_std"):
                mean = op.get("mean", [0.485, 0.456, 0.406])
                std = op.get("std", [0.229, 0.224, 0.225])
            else:
                mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
            if is_chw:
                std = np.asarray(std, np.float32)[:, None, None]
                image = image * (scale / std) - np.asarray(mean, np.float32)[:, None, None] / std
            else:
                image, is_chw = normalize_chw(image, mean, std, scale), True
        elif kind == "Pad":
            size = op.get("size") or [640, 640]
            pad_h, pad_w = (size, size) if isinstance(size, int) else tuple(size[-2:])
            fill = np.asarray(op.get("fill_value") or [114.0, 114.0, 114.0], np.float32)
            if not is_chw:
                image, is_chw = _to_chw(image), True
            if image.shape[1:] != (pad_h, pad_w):
                canvas = np.empty((3, pad_h, pad_w), np.float32)
                canvas[:] = fill[:, None, None]
                canvas[:, :image.shape[1], :image.shape[2]] = image
                image = canvas
    # scale_factor describes the Resize alone (before any Pad).
    resize = next((op for op in ops if op.get("type") == "Resize"), None)
    h, w = _resize_hw(resize, h0, w0) if resize else (h0, w0)
    chw = (image if is_chw else _to_chw(image))[None]
    scale = (h / h0, w / w0)
    values = {"image": chw, "im_shape": np.array([[h, w]], np.float32),
              "scale_factor": np.array([scale], np.float32)}
    return [values[name] for name in input_names], scale


def _to_chw(hwc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)


def _resize_hw(op: Dict, h0: int, w0: int):
    """(height, width) a PaddleDetection Resize op gives an h0 x w0 image."""
    target_h, target_w = op["target_size"]
    if op.get("keep_ratio"):
        scale = min(max(target_h, target_w) / max(h0, w0), min(target_h, target_w) / min(h0, w0))
        return round(h0 * scale), round(w0 * scale)
    return int(target_h), int(target_w)


def _hard_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, top_k: int):
    order = scores.argsort()[::-1]
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size and len(keep) < top_k:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(boxes[i, 0], boxes[order[1:], 0])
        yy1 = np.maximum(boxes[i, 1], boxes[order[1:], 1])
        xx2 = np.minimum(boxes[i, 2], boxes[order[1:], 2])
        yy2 = np.minimum(boxes[i, 3], boxes[order[1:], 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        iou = inter / (areas[i] + areas[order[1:]] - inter + 1e-9)
        order = order[1:][iou <= iou_threshold]
    return np.asarray(keep, dtype=int)


def picodet_decode(outputs: List[np.ndarray], input_hw, strides: Sequence[int], nms: Dict,
                   threshold: float) -> np.ndarray:
    """PicoDet heads without NMS (first half class scores [1,N,C], second half box
    distributions [1,N,4*(reg_max+1)]) → [K, 6] rows (class, score, x1, y1, x2, y2) in input
    coordinates: GFL decode at cell centres, top nms_top_k per level, per-class hard NMS."""
    half = len(outputs) // 2
    height, width = input_hw
    top_per_level = int(nms.get("nms_top_k", 1000))
    boxes, scores = [], []
    for stride, score, dist in zip(strides, outputs[:half], outputs[half:]):
        score, dist = score[0], dist[0]
        reg_max = dist.shape[-1] // 4 - 1
        rows, cols = int(np.ceil(height / stride)), int(np.ceil(width / stride))
        xs, ys = np.meshgrid(np.arange(cols), np.arange(rows))
        centres = (np.stack([xs.ravel(), ys.ravel()], axis=1) + 0.5) * stride
        logits = dist.reshape(-1, reg_max + 1)
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        distance = (probs @ np.arange(reg_max + 1)).reshape(-1, 4) * stride
        top = np.argsort(score.max(axis=1))[::-1][:top_per_level]
        c = centres[top]
        boxes.append(np.concatenate([c - distance[top, :2], c + distance[top, 2:]], axis=1))
        scores.append(score[top])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    rows = []
    keep_top_k = int(nms.get("keep_top_k", 100))
    iou = float(nms.get("nms_threshold", 0.5))
    for cls in range(scores.shape[1]):
        mask = scores[:, cls] > threshold
        if not mask.any():
            continue
        kept = _hard_nms(boxes[mask], scores[mask, cls], iou, keep_top_k)
        for i in kept:
            rows.append([cls, scores[mask, cls][i], *boxes[mask][i]])
    result = np.array(rows, dtype=np.float64).reshape(-1, 6)
    result[:, [2, 4]] = result[:, [2, 4]].clip(0, width)
    result[:, [3, 5]] = result[:, [3, 5]].clip(0, height)
    return result


def kept_detections(rows: np.ndarray, threshold: float, source_hw, labels=None,
                    drop_page_images: bool = False) -> np.ndarray:
    """Indices of the [K, 6] rows PaddleX 3.7 keeps, in the model's order (PaddleX does not
    re-sort): score > threshold, a class id (not -1), and a box that is not empty once
    clipped to the image.

    ``drop_page_images``: PaddleX's object detection (DetPostProcess) also drops boxes of a
    class named ``image`` that cover more than 82% (portrait) / 93% of the page, unless that
    leaves nothing."""
    h, w = source_hw
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, 6)
    keep = np.flatnonzero((rows[:, 1] > threshold) & (rows[:, 0] > -1))
    if drop_page_images and len(keep) > 1 and labels and "image" in list(labels):
        image_id = list(labels).index("image")
        limit = (0.82 if w > h else 0.93) * w * h  # PaddleX: img_size[0] > img_size[1]
        x1, y1 = rows[keep, 2].clip(0, None), rows[keep, 3].clip(0, None)
        x2, y2 = np.minimum(rows[keep, 4], w), np.minimum(rows[keep, 5], h)
        small = (rows[keep, 0] != image_id) | ((x2 - x1) * (y2 - y1) <= limit)
        if small.any():
            keep = keep[small]
    x1, y1 = rows[keep, 2].clip(0, w), rows[keep, 3].clip(0, h)
    x2, y2 = rows[keep, 4].clip(0, w), rows[keep, 5].clip(0, h)
    return keep[(x2 > x1) & (y2 > y1)]


def detection_boxes(rows: np.ndarray, labels, source_hw) -> List[Dict]:
    """PaddleX DetResult boxes (cls_id, label, score, coordinate clipped to the image) for
    rows already selected by :func:`kept_detections`."""
    h, w = source_hw
    out = []
    for cls, score, x1, y1, x2, y2 in np.asarray(rows, dtype=np.float64).reshape(-1, 6):
        cls = int(cls)
        out.append({"cls_id": cls,
                    "label": str(labels[cls]) if labels and cls < len(labels) else str(cls),
                    "score": float(score),
                    "coordinate": [float(np.clip(x1, 0, w)), float(np.clip(y1, 0, h)),
                                   float(np.clip(x2, 0, w)), float(np.clip(y2, 0, h))]})
    return out


def instance_masks(masks: np.ndarray, kept: np.ndarray, source_hw) -> np.ndarray:
    """The kept boxes' masks as uint8 0/1 [K, H, W] at the input image size. Exports give
    them at the source size, padded to the largest image of a batch; PaddleX additionally
    crops each to its box when drawing, which a client can do from ``coordinate``."""
    h, w = source_hw
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks output has shape {list(masks.shape)}; expected [K, H, W]")
    selected = (masks[kept] > 0).astype(np.uint8)
    if selected.shape[1] >= h and selected.shape[2] >= w:
        return np.ascontiguousarray(selected[:, :h, :w])
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST)
                     for m in selected]) if len(selected) else np.zeros((0, h, w), np.uint8)


def _discover_tasks() -> None:
    """Import this package's other modules: each declares its task with register_task. By
    path, not by name: inside tritonserver the package is imported as
    ``<version>.python_backend.vision``."""
    import importlib
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name != "vision_ops":
            importlib.import_module(f"{__package__}.{info.name}")


_discover_tasks()
