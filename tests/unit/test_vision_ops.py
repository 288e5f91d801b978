"""Pre/post-processing of the vision graphs (numpy/OpenCV, no server)."""

from __future__ import annotations

import numpy as np
import pytest

from hpi_triton.python_backend.common.engine import FunctionEngine
from hpi_triton.python_backend.common.image_io import normalize_chw
from hpi_triton.python_backend.vision import vision_ops
from hpi_triton.python_backend.vision.vision_ops import VisionSettings


def _settings(task: str, **fields) -> VisionSettings:
    """A vision graph's settings for ``task`` with its own ``fields`` (any engine)."""
    return VisionSettings(task=task, model=["engine", ["x"], ["y"]], params={}, **fields)


def test_normalize_chw_equals_the_plain_formula():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mean, std, scale = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 1 / 255.0
    mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    plain = (image.astype(np.float32) * (np.float32(scale) / std32) - mean32 / std32)
    out = normalize_chw(image, mean, std, scale)
    assert out.shape == (3, 37, 53) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, plain.transpose(2, 0, 1), rtol=0, atol=1e-6)


def test_classification_preprocess_pil_and_crop():
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    ops = [{"ResizeImage": {"resize_short": 232, "interpolation": "bicubic", "backend": "pil"}},
           {"CropImage": {"size": 224}},
           {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.5] * 3, "std": [0.5] * 3}},
           {"ToCHWImage": None}]
    x = vision_ops.classification_preprocess(image, ops)
    assert x.shape == (3, 224, 224) and x.min() >= -1.0 and x.max() <= 1.0
    cv = vision_ops.classification_preprocess(
        image, [{"ResizeImage": {"resize_short": 232, "interpolation": "bicubic"}}] + ops[1:])
    assert not np.array_equal(x, cv)  # Pillow and OpenCV resample differently


def test_detection_preprocess_keep_ratio_and_pad():
    image = np.full((200, 400, 3), 255, np.uint8)
    ops = [{"type": "Resize", "target_size": [640, 640], "keep_ratio": True, "interp": 1},
           {"type": "NormalizeImage", "mean": [0.0] * 3, "std": [1.0] * 3, "norm_type": "none",
            "is_scale": False},
           {"type": "Pad", "size": [640, 640], "fill_value": [114.0, 114.0, 114.0]},
           {"type": "Permute"}]
    (x, scale_factor), scale = vision_ops.detection_preprocess(image, ops,
                                                               ["image", "scale_factor"])
    assert x.shape == (1, 3, 640, 640) and scale == (1.6, 1.6)
    assert np.all(x[0, :, :320, :] == 255.0) and np.all(x[0, :, 320:, :] == 114.0)
    np.testing.assert_allclose(scale_factor, [[1.6, 1.6]])


def test_kept_detections_and_masks():
    rows = np.array([[0, 0.9, 10, 10, 50, 50],
                     [1, 0.4, 0, 0, 20, 20],     # below the threshold
                     [-1, 0.95, 0, 0, 20, 20],   # no class
                     [2, 0.8, 90, 90, 120, 120],  # empty once clipped to 80x100
                     [1, 0.95, 5, 5, 30, 30]], np.float32)
    kept = vision_ops.kept_detections(rows, 0.5, (80, 100))
    assert kept.tolist() == [0, 4]  # the model's order, as PaddleX 3.7
    boxes = vision_ops.detection_boxes(rows[kept], ["a", "b", "c"], (80, 100))
    assert [b["label"] for b in boxes] == ["a", "b"]
    # object_detection drops a page-covering box of class "image" (not the only box left)
    page = np.vstack([rows, [[2, 0.99, 0, 0, 100, 80]]]).astype(np.float32)
    assert vision_ops.kept_detections(page, 0.5, (80, 100), ["a", "b", "image"],
                                      True).tolist() == [0, 4]
    assert vision_ops.kept_detections(page, 0.5, (80, 100), ["a", "b", "image"]).tolist() \
        == [0, 4, 5]
    masks = np.zeros((5, 96, 128), np.int32)  # padded beyond the 80x100 image
    masks[4, 5:30, 5:30] = 1
    out = vision_ops.instance_masks(masks, kept, (80, 100))
    assert out.shape == (2, 80, 100) and out.dtype == np.uint8
    assert out[1].sum() == 25 * 25 and out[0].sum() == 0
    small = vision_ops.instance_masks(masks[:, :40, :50], kept, (80, 100))  # upsampled
    assert small.shape == (2, 80, 100) and small[1].sum() > 0


def test_preprocess_context_carries_what_postprocess_needs():
    """The served graph splits run_task into a pre- and a post-processing model that share
    only a JSON context: the split gives the same result as the single call."""
    import json

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (200, 400, 3), dtype=np.uint8)
    settings = VisionSettings(
        task="object_detection", model=["det", ["image", "im_shape", "scale_factor"], []],
        params={}, inputs=["image", "im_shape", "scale_factor"],
        preprocess=[{"type": "Resize", "target_size": [320, 320], "keep_ratio": True,
                     "interp": 1}, {"type": "NormalizeImage"}],
        labels=["a", "b"], head="nms_inside")
    params = {"threshold": 0.5}
    rows = np.array([[[1, 0.9, 10, 20, 390, 150], [0, 0.3, 0, 0, 5, 5]]], np.float32)

    def engine(image, im_shape, scale_factor):
        assert image.shape == (1, 3, 160, 320)
        return [rows[0], np.array([2], np.int32)]

    feeds, context = vision_ops.preprocess(settings, params, rgb)
    context = json.loads(json.dumps(context))  # what crosses between the two models
    assert context == {"source_hw": [200, 400], "scale": [0.8, 0.8], "input_hw": [160, 320]}
    split = vision_ops.postprocess(settings, params, engine(*feeds), context)
    assert split == vision_ops.run_task(settings, params, rgb, FunctionEngine(engine))
    # ... and the JSON the graph's models are configured with runs the same
    assert split == vision_ops.run_task(settings.to_json(), params, rgb, FunctionEngine(engine))
    assert [b["label"] for b in split["boxes"]] == ["b"]
    assert vision_ops.used_outputs(settings, 3) == 3
    assert vision_ops.used_outputs(_settings("image_classification", preprocess=[]), 2) == 1


def test_deferred_normalisation_is_bit_identical():
    """The served graph may send the engine model uint8 CHW pixels and scale them there:
    scale_chw(deferred feed) must equal the in-process float feed exactly."""
    import pytest

    from hpi_triton.python_backend.common.image_io import scale_chw

    rgb = np.random.default_rng(5).integers(0, 256, (300, 451, 3), dtype=np.uint8)
    classification = _settings("image_classification", preprocess=[
        {"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}},
        {"NormalizeImage": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                            "scale": "1./255."}}, {"ToCHWImage": None}])
    segmentation = _settings("semantic_segmentation", label_dtype="uint8", transforms=[
        {"type": "Resize", "target_size": [256, 192]},
        {"type": "Normalize", "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}])
    unnormalised = _settings("image_classification", preprocess=[
        {"ResizeImage": {"size": 64}}, {"ToCHWImage": None}])
    for settings in (classification, segmentation, unnormalised):
        ops = settings.preprocess or settings.transforms
        (feed,), _ = vision_ops.preprocess(settings, {}, rgb)
        (pixels,), _ = vision_ops.preprocess(settings, {}, rgb, deferred=True)
        assert pixels.dtype == np.uint8 and pixels.shape == feed.shape
        scaling = vision_ops.deferred_scaling(settings.task, ops)
        assert np.array_equal(scale_chw(pixels, *scaling), feed)
    # NormalizeImage before the crop: the float pixels are cropped, nothing to defer
    early = _settings("image_classification", preprocess=[
        {"NormalizeImage": {}}, {"CropImage": {"size": 224}}])
    assert vision_ops.deferred_scaling(early.task, early.preprocess) is None
    with pytest.raises(ValueError, match="cannot leave its normalisation"):
        vision_ops.preprocess(early, {}, rgb, deferred=True)
    assert vision_ops.deferred_scaling("object_detection", [{"type": "Resize"}]) is None


def test_one_class_per_task_drives_the_build_and_the_served_models():
    """The task classes are the one place a vision task is described: the build's role and
    array-output tables come from them, and an unknown task is refused naming the known."""
    from hpi_triton.ensembles import vision

    assert {"image_classification", "object_detection", "semantic_segmentation",
            "instance_segmentation"} <= set(vision_ops.TASKS)
    assert vision.ROLES == {name: t.role for name, t in vision_ops.TASKS.items()}
    assert set(vision.ARRAY_OUTPUTS) == {name for name, t in vision_ops.TASKS.items()
                                         if t.array_outputs}
    assert {"semantic_segmentation", "instance_segmentation"} <= set(vision.ARRAY_OUTPUTS)
    assert {"image_classification", "semantic_segmentation"} <= set(
        vision_ops.DEFERRABLE_TASKS)
    assert "object_detection" not in vision_ops.DEFERRABLE_TASKS
    assert isinstance(vision_ops.task("instance_segmentation"), vision_ops.ObjectDetection)
    with pytest.raises(ValueError, match="known: \\['image_classification'"):
        vision_ops.task("depth_estimation")
    with pytest.raises(vision_ops.ParameterError, match="topk"):
        vision_ops.coerce_parameters({"topk": 0}, {"task": "image_classification", "topk": 5,
                                                   "max_pixels": 10})


#: One graph's settings per task family, as the build writes them.
_TASK_SETTINGS = {
    "image_classification": dict(preprocess=[{"ResizeImage": {"size": 224}}],
                                 labels=["cat", "dog"]),
    "image_multilabel_classification": dict(preprocess=[{"ResizeImage": {"size": 448}}]),
    "object_detection": dict(preprocess=[{"type": "Resize", "target_size": [640, 640]}],
                             inputs=["image", "scale_factor"], labels=["text", "table"],
                             nms={"nms_threshold": 0.5}, head="picodet",
                             fpn_stride=[8, 16, 32, 64]),
    "instance_segmentation": dict(preprocess=[], inputs=["image"], head="nms_inside"),
    "semantic_segmentation": dict(transforms=[{"type": "Normalize"}], label_dtype="uint8"),
}


@pytest.mark.parametrize("name", sorted(_TASK_SETTINGS))
def test_vision_settings_round_trip_for_each_task(name):
    """The build writes VisionSettings as JSON (to_json) and the graph reads it back
    (from_json): the same settings, through real JSON text, with unset fields left out."""
    import json

    settings = VisionSettings(task=name, model=[f"{name}_engine", ["image"], ["out"]],
                              params={"task": name, "max_pixels": 100}, **_TASK_SETTINGS[name])
    data = json.loads(json.dumps(settings.to_json()))
    assert set(data) == {"task", "model", "params", *_TASK_SETTINGS[name]}
    assert VisionSettings.from_json(data) == settings
    assert VisionSettings.from_json(settings) is settings


def test_vision_settings_refuse_what_the_task_does_not_take():
    """A settings JSON from another hpi-triton version is refused naming the field, as are
    fields of another task and a task's required field left out."""
    data = VisionSettings(task="object_detection", model=["det", ["image"], ["out"]],
                          params={}, **_TASK_SETTINGS["object_detection"]).to_json()
    with pytest.raises(ValueError, match=r"VisionSettings.*\['arrays'\].*rebuild"):
        VisionSettings.from_json({**data, "arrays": ["masks"]})
    with pytest.raises(ValueError, match=r"'object_detection'.*does not take: "
                                         r"\['label_dtype'\].*rebuild"):
        VisionSettings.from_json({**data, "label_dtype": "uint8"})
    without_head = {k: v for k, v in data.items() if k != "head"}
    with pytest.raises(ValueError, match=r"fields missing: \['head'\]"):
        VisionSettings.from_json(without_head)
    with pytest.raises(ValueError, match="task 'depth_estimation' is not supported"):
        VisionSettings.from_json({**data, "task": "depth_estimation"})
