"""The vision pipelines' generated graph: a Triton ensemble pre-processing model → engine model
→ post-processing model, checked against Triton's schema, a golden file and its own wiring."""

import json
from pathlib import Path

from hpi_triton.core.model_dir import load_model_dir
from hpi_triton.ensembles import pipeline_spec
from hpi_triton.generator.plan import ModelReport
from hpi_triton.triton_models.config import (
    DynamicBatching,
    TensorConfig,
    TritonModelConfig,
    read_pbtxt,
)

GOLDEN = Path(__file__).parent.parent / "golden"


def _write(pir_model, tmp_path, name="image_classification"):
    """Write the graph over an engine model config like the build's (batching, max 8)."""
    spec = pipeline_spec("image_classification", {"ImageClassification": pir_model},
                         served_name=name)
    config = TritonModelConfig(
        name=spec.engine_name, backend="python", max_batch_size=8,
        inputs=[TensorConfig("x", "float32", [3, 224, 224])],
        outputs=[TensorConfig("softmax", "float32", [1000]),
                 TensorConfig("features", "float32", [1024])],
        dynamic_batching=DynamicBatching(),
    )
    config.write((tmp_path / spec.engine_name).mkdir(parents=True) or tmp_path / spec.engine_name)
    report = ModelReport(spec.engine_name, str(pir_model), "MobileNetV3_small_x1_0", "pir",
                         config=config)
    entry = spec.write(tmp_path, {spec.engine_name: load_model_dir(pir_model)},
                       {spec.engine_name: report})
    return spec, entry


def test_ensemble_config_matches_golden(pir_model, tmp_path):
    _write(pir_model, tmp_path)
    text = (tmp_path / "image_classification" / "config.pbtxt").read_text()
    assert text == (GOLDEN / "vision_ensemble.pbtxt").read_text()
    assert read_pbtxt(tmp_path / "image_classification" / "config.pbtxt").platform == "ensemble"


def test_ensemble_wiring(pir_model, tmp_path):
    """Every step reads tensors an earlier step (or the request) produced, with the dtype and
    shape the producer declares; the result comes from the post-processing model."""
    spec, entry = _write(pir_model, tmp_path, name="orientation")
    ensemble = read_pbtxt(tmp_path / "orientation" / "config.pbtxt")
    assert entry.steps == ["orientation_preprocess", "orientation_ImageClassification",
                              "orientation_postprocess"]
    assert entry.license_check == "orientation_preprocess"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == entry.steps
    assert all(t.optional for t in ensemble.input)  # image or image_array
    produced = {t.name: (t.data_type, [-1] + list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        config = read_pbtxt(tmp_path / step.model_name / "config.pbtxt")
        batch = [-1] if config.max_batch_size > 0 else []
        for tensor in config.input:
            if tensor.name not in step.input_map:
                assert tensor.optional
                continue
            dtype, dims = produced[step.input_map[tensor.name]]
            assert dtype == tensor.data_type
            assert dims[-len(tensor.dims):] == list(tensor.dims) or tensor.name.startswith(
                "image")
        for tensor in config.output:
            if tensor.name in step.output_map:
                produced[step.output_map[tensor.name]] = (tensor.data_type,
                                                          batch + list(tensor.dims))
    # Only the first engine output is fetched: classification reads the probabilities.
    post = read_pbtxt(tmp_path / "orientation_postprocess" / "config.pbtxt")
    assert [t.name for t in post.input] == ["output_0", "context"]
    assert list(post.input[0].dims) == [-1, 1000]
    pre = read_pbtxt(tmp_path / "orientation_preprocess" / "config.pbtxt")
    assert [(t.name, list(t.dims)) for t in pre.output] == [("input_0", [-1, 3, 224, 224]),
                                                            ("context", [1])]
    # Both steps read the settings the build wrote, typed (VisionSettings.from_json).
    from hpi_triton.python_backend.vision.vision_ops import VisionSettings

    written = [json.loads(read_pbtxt(tmp_path / model / "config.pbtxt")
                          .parameters["pipeline_settings"].string_value)
               for model in ("orientation_preprocess", "orientation_postprocess")]
    assert written[0] == written[1]
    settings = VisionSettings.from_json(written[0])
    assert settings.task == "image_classification" and settings.preprocess
    assert settings.model == entry.roles["ImageClassification"]
    assert settings.model[0] == "orientation_ImageClassification"
    assert settings.params == entry.params and settings.params["topk"] >= 1
    for model in ("orientation_preprocess", "orientation_postprocess"):
        version = tmp_path / model / "1"
        assert {p.name for p in version.iterdir()} == {"model.py", "python_backend"}
        assert (version / "python_backend" / "vision" / "vision_ops.py").is_file()
        assert read_pbtxt(tmp_path / model / "config.pbtxt").instance_group[0].count == 2
    assert not list((tmp_path / "orientation" / "1").iterdir())  # an ensemble's is empty


def test_ensemble_model_names_must_be_free(pir_model, tmp_path):
    """A plain model named like one of the ensemble's steps is refused before anything is
    built, as is a second pipeline of the same served name."""
    import pytest

    from hpi_triton.errors import BuildError
    from hpi_triton.generator.build import BuildOptions, ModelRequest, build_repository

    spec = pipeline_spec("image_classification", {"ImageClassification": pir_model},
                         served_name="orientation")
    with pytest.raises(BuildError, match=r"repeated: \['orientation_preprocess'\]"):
        build_repository([ModelRequest("orientation_preprocess", pir_model)],
                         BuildOptions(out=tmp_path / "a"), [spec])
    with pytest.raises(BuildError, match="repeated"):
        build_repository([], BuildOptions(out=tmp_path / "b"), [spec, spec])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _segmentation_spec(**params):
    return pipeline_spec("semantic_segmentation", {"SemanticSegmentation": Path("unused")},
                         params)


def _dtype(spec, source):
    """The label map dtype the build serves for ``spec`` on an engine like ``source``."""
    return spec.build._label_dtype(source, spec.params)


def _engine_outputs(*shape):
    from types import SimpleNamespace

    return SimpleNamespace(outputs=[SimpleNamespace(name="out", shape=shape)])


def test_label_map_dtype_defaults_to_uint8_and_follows_the_class_count():
    import pytest

    from hpi_triton.errors import BuildError

    assert _dtype(_segmentation_spec(), _engine_outputs(-1, -1, -1)) == "uint8"
    assert _dtype(_segmentation_spec(), _engine_outputs(-1, 19, -1, -1)) == "uint8"
    assert _dtype(_segmentation_spec(label_dtype="int32"), _engine_outputs(-1, -1, -1)) == "int32"
    # logits of more than 256 classes: labels do not fit 8 bits
    assert _dtype(_segmentation_spec(), _engine_outputs(-1, 300, -1, -1)) == "int32"
    with pytest.raises(BuildError, match="label_dtype=uint8 cannot hold .* 300 classes"):
        _dtype(_segmentation_spec(label_dtype="uint8"), _engine_outputs(-1, 300, -1, -1))
    with pytest.raises(BuildError, match=r"label_dtype='int16'; expected one of \['uint8', "):
        _dtype(_segmentation_spec(label_dtype="int16"), _engine_outputs(-1, -1, -1))


def test_every_vision_task_has_its_build_half():
    from hpi_triton.ensembles import registry
    from hpi_triton.ensembles.vision import TASK_BUILDS
    from hpi_triton.python_backend.vision import vision_ops

    kinds = registry.kinds()  # imports every pipeline module (the vision tasks' build halves)
    assert set(TASK_BUILDS) == set(vision_ops.TASKS)
    assert set(TASK_BUILDS) <= set(kinds)


def test_uint8_label_map_refuses_labels_it_cannot_hold():
    import numpy as np
    import pytest

    from hpi_triton.python_backend.vision import vision_ops

    labels = np.array([[[0, 3], [255, 7]]], np.int32)
    out = vision_ops.segmentation_postprocess(labels, (4, 4), "uint8")
    assert out.dtype == np.uint8 and out.shape == (4, 4) and out.max() == 255
    assert vision_ops.segmentation_postprocess(labels + 1000, (2, 2)).max() == 1255
    with pytest.raises(ValueError, match=r"labels 1\.\.256, which a uint8 .*label_dtype=int32"):
        vision_ops.segmentation_postprocess(labels + 1, (2, 2), "uint8")
