"""Vision pipelines as Triton ensembles: pre-processing model → engine model → post-processing
model.

``<name>`` is an ensemble (scheduled inside tritonserver, no Python in between) of
``<name>_preprocess`` (Python: decode, inference.yml pre-processing → the engine's inputs and a
JSON ``context``), ``<name>_<Role>`` (the engine, any backend) and ``<name>_postprocess``
(Python: engine outputs + context → PaddleX's result fields). Each step has its own
instances, so one request's post-processing overlaps the next one's decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from hpi_triton.ensembles.base import engine_call, image_inputs, write_python_model
from hpi_triton.errors import BuildError, HpiTritonError, InferenceConfigError
from hpi_triton.generator.model_dir import ModelSource, read_inference_yml
from hpi_triton.generator.plan import ModelRequest
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.vision import vision_ops

# pipeline name → its one role (PaddleX SubModules name), from the task classes the served
# models use too
ROLES = {name: task.role for name, task in vision_ops.TASKS.items()}
# outputs that travel as tensors beside the JSON result: name → (dtype, dims); the label
# map's dtype is the pipeline's ``label_dtype`` (see VisionPipeline._label_dtype)
ARRAY_OUTPUTS = {name: task.array_outputs for name, task in vision_ops.TASKS.items()
                 if task.array_outputs}
DEFAULT_MAX_PIXELS = 40_000_000
# Label map dtypes a semantic segmentation pipeline may serve (--param label_dtype=...).
LABEL_DTYPES = ("uint8", "int32")


@dataclass
class VisionPipeline:
    """A single-model vision pipeline (``--pipeline image_classification --model
    ImageClassification=DIR``).

    ``served_name`` names the graph model (default: the pipeline name) and prefixes its engine
    model, so one repository can serve several models of the same pipeline."""

    name: str
    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    served_name: Optional[str] = None

    def __post_init__(self):
        role = ROLES[self.name]
        if set(self.roles) != {role}:
            raise BuildError(f"pipeline {self.name} takes exactly --model {role}=DIR; got "
                             f"roles {sorted(self.roles)}")
        self.role = role
        self.served_name = self.served_name or self.name

    @property
    def engine_name(self) -> str:
        return f"{self.served_name}_{self.role}"

    def model_requests(self):
        path = Path(self.roles[self.role])
        # A uint8 label map leaves the engine model as uint8 already (integer label outputs
        # only: logits stay float and the post-processing model takes their argmax).
        narrow = (self.name == "semantic_segmentation"
                  and str(self.params.get("label_dtype", "uint8")) == "uint8")
        return [ModelRequest(self.engine_name, path, self.backends.get(self.role),
                             uint8_inputs=self._uint8_inputs(path),
                             uint8_outputs=(0,) if narrow else ())]

    def _uint8_inputs(self, path: Path) -> dict:
        """{0: (alpha, offset)} when the engine model can take the image as uint8 pixels and
        normalise them itself (:func:`vision_ops.deferred_scaling`): the pre-processing model
        then sends a quarter of the bytes (measured: segmentation +5–11% img/s at 4 clients)."""
        if self.name not in vision_ops.DEFERRABLE_TASKS:
            return {}
        try:
            config = read_inference_yml(path)
        except HpiTritonError:
            return {}  # the build reports the broken model directory itself
        key, ops = _image_ops(self.name, config)
        settings = {"task": self.name, key: ops if isinstance(ops, list) else []}
        try:
            scaling = vision_ops.deferred_scaling(settings)
        except (AttributeError, TypeError, ValueError, StopIteration):
            return {}  # malformed ops: _settings() names the field when the graph is written
        return {0: scaling} if scaling else {}

    def _settings(self, source: ModelSource) -> dict:
        settings = {
            "task": self.name,
            "model": engine_call(self.engine_name, source),
        }
        defaults = {"task": self.name, "max_pixels": DEFAULT_MAX_PIXELS}
        if self.name == "image_classification":
            _, ops = _image_ops(self.name, source.config)
            if not ops:
                raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                                           f"'PreProcess.transform_ops' is missing; image "
                                           f"classification needs ResizeImage / NormalizeImage")
            topk_cfg = (source.config.get("PostProcess") or {}).get("Topk") or {}
            settings["preprocess"] = ops
            settings["labels"] = topk_cfg.get("label_list")
            defaults["topk"] = int(topk_cfg.get("topk", 5))
        if self.name in ("object_detection", "instance_segmentation"):
            settings.update(self._detection_settings(source))
            defaults["threshold"] = float(source.config.get("draw_threshold", 0.5))
        if self.name == "semantic_segmentation":
            _, transforms = _image_ops(self.name, source.config)
            if not isinstance(transforms, list):
                raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                                           f"'Deploy.transforms' is missing; semantic "
                                           f"segmentation needs PaddleSeg's Deploy section")
            settings["transforms"] = transforms
            settings["arrays"] = list(ARRAY_OUTPUTS[self.name])
            settings["label_dtype"] = self._label_dtype(source)
        try:
            params = {k: v for k, v in self.params.items() if k != "label_dtype"}
            settings["params"] = vision_ops.coerce_parameters(params, defaults)
        except vision_ops.ParameterError as exc:
            raise BuildError(f"pipeline {self.name}: {exc}") from exc
        return settings

    def _label_dtype(self, source: ModelSource) -> str:
        """The served label map's dtype: ``uint8`` (a quarter of INT32's bytes on the wire;
        PaddleSeg itself saves label maps as 8-bit PNGs) unless the user asks for ``int32``
        (``--param label_dtype=int32``) or the engine's logits show more than 256 classes."""
        asked = self.params.get("label_dtype")
        if asked is not None and str(asked) not in LABEL_DTYPES:
            raise BuildError(f"pipeline {self.name}: --param label_dtype={asked!r}; expected "
                             f"one of {list(LABEL_DTYPES)}")
        logits = source.outputs[0].shape if source.outputs else []
        classes = logits[1] if len(logits) == 4 and isinstance(logits[1], int) else None
        if classes is not None and classes > 256:
            if asked == "uint8":
                raise BuildError(f"pipeline {self.name}: --param label_dtype=uint8 cannot hold "
                                 f"the labels of {classes} classes; use int32")
            return "int32"
        return str(asked or "uint8")

    def _detection_settings(self, source: ModelSource) -> dict:
        yml = source.path / "inference.yml"
        ops = source.config.get("Preprocess")
        if not isinstance(ops, list):
            raise InferenceConfigError(f"{yml}: field 'Preprocess' is missing; object detection "
                                       f"needs PaddleDetection's Preprocess list")
        inputs = [t.name for t in source.inputs]
        unknown = sorted(set(inputs) - {"image", "im_shape", "scale_factor"})
        if unknown or "image" not in inputs:
            raise InferenceConfigError(f"{source.path}: detection inputs are {inputs}; expected "
                                       f"'image' plus optional 'im_shape' / 'scale_factor'")
        outputs = source.outputs
        labels = source.config.get("label_list") or source.onnx_metadata_lines(
            ("character", "label_list"))
        settings = {"preprocess": ops, "inputs": inputs, "labels": labels,
                    "nms": source.config.get("NMS") or {}}
        if self.name == "instance_segmentation":
            # Mask-RT-DETR / Mask R-CNN exports: boxes [K,6], box count, masks [K,H,W]
            if len(outputs) != 3 or outputs[0].shape[-1] != 6 or len(outputs[2].shape) != 3:
                raise InferenceConfigError(
                    f"{source.path}: instance segmentation outputs "
                    f"{[(t.name, t.shape) for t in outputs]}; expected boxes [K,6], box count "
                    f"and masks [K,H,W] (Mask-RT-DETR export)")
            settings["head"] = "nms_inside"
            settings["arrays"] = list(ARRAY_OUTPUTS[self.name])
        elif len(outputs) == 2 and outputs[0].shape[-1] == 6:
            settings["head"] = "nms_inside"
        elif len(outputs) >= 4 and len(outputs) % 2 == 0:
            strides = source.config.get("fpn_stride")
            if not strides or len(strides) != len(outputs) // 2:
                raise InferenceConfigError(
                    f"{yml}: field 'fpn_stride' must list one stride per head "
                    f"({len(outputs) // 2}) for a detector exported without NMS")
            settings["head"], settings["fpn_stride"] = "picodet", list(strides)
        else:
            raise InferenceConfigError(
                f"{source.path}: detection outputs {[t.name for t in outputs]} are neither "
                f"NMS output (boxes [N,6] + box count) nor PicoDet score/box heads")
        return settings

    @property
    def graph_models(self):
        """The models this pipeline writes besides its engine."""
        return [self.served_name, self.preprocess_name, self.postprocess_name]

    @property
    def preprocess_name(self) -> str:
        return f"{self.served_name}_preprocess"

    @property
    def postprocess_name(self) -> str:
        return f"{self.served_name}_postprocess"

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        from hpi_triton.triton_models.config import TensorConfig, TritonModelConfig

        settings = self._settings(sources[self.engine_name])
        engine_inputs, engine_outputs = _engine_tensors(repo / self.engine_name)
        # The pre-processing model emits the engine's inputs in the source model's order.
        order = settings["model"][1]
        if sorted(n for n, _, _ in engine_inputs) == sorted(order):
            engine_inputs.sort(key=lambda tensor: order.index(tensor[0]))
        engine_outputs = engine_outputs[:vision_ops.used_outputs(settings, len(engine_outputs))]
        feeds = [TensorConfig(f"input_{i}", dtype, dims)
                 for i, (_, dtype, dims) in enumerate(engine_inputs)]
        fetched = [TensorConfig(f"output_{i}", dtype, dims)
                   for i, (_, dtype, dims) in enumerate(engine_outputs)]
        context = TensorConfig("context", "object", [1])
        arrays = [TensorConfig(out, dtype or settings["label_dtype"], dims)
                  for out, (dtype, dims) in ARRAY_OUTPUTS.get(self.name, {}).items()]
        result = [TensorConfig("result", "object", [1])] + arrays
        write_python_model(repo, self.preprocess_name, EntryPoint.VISION_PRE, settings,
                           self.instances, image_inputs(), feeds + [context])
        write_python_model(repo, self.postprocess_name, EntryPoint.VISION_POST, settings,
                           self.instances, fetched + [context], result)

        def tensor_map(names, values):  # a step's model tensor name → ensemble tensor name
            return dict(zip(names, values))

        steps = [
            {"model_name": self.preprocess_name, "model_version": -1,
             "input_map": {"image": "image", "image_array": "image_array"},
             "output_map": tensor_map([t.name for t in feeds] + ["context"],
                                      [f"feed_{i}" for i in range(len(feeds))] + ["context"])},
            {"model_name": self.engine_name, "model_version": -1,
             "input_map": tensor_map([n for n, _, _ in engine_inputs],
                                     [f"feed_{i}" for i in range(len(feeds))]),
             "output_map": tensor_map([n for n, _, _ in engine_outputs],
                                      [f"fetch_{i}" for i in range(len(fetched))])},
            {"model_name": self.postprocess_name, "model_version": -1,
             "input_map": tensor_map([t.name for t in fetched] + ["context"],
                                     [f"fetch_{i}" for i in range(len(fetched))] + ["context"]),
             "output_map": {t.name: t.name for t in result}},
        ]
        (repo / self.served_name / "1").mkdir(parents=True)  # an ensemble's stays empty
        TritonModelConfig(name=self.served_name, platform="ensemble", max_batch_size=0,
                          inputs=image_inputs(), outputs=result,
                          ensemble_steps=steps).write(repo / self.served_name)
        return {"pipeline": self.name, "served_name": self.served_name,
                "roles": {self.role: settings["model"]},
                "steps": [self.preprocess_name, self.engine_name, self.postprocess_name],
                "license_check": self.preprocess_name,
                "params": settings["params"]}


# pipeline → (graph settings key, inference.yml section, field) of its image pre-processing ops
_IMAGE_OPS = {"image_classification": ("preprocess", "PreProcess", "transform_ops"),
              "semantic_segmentation": ("transforms", "Deploy", "transforms")}


def _image_ops(pipeline: str, config: dict):
    """(settings key, inference.yml value) of the image pre-processing ops that the graph's
    normalisation comes from: PaddleX's PreProcess.transform_ops (classification) or
    PaddleSeg's Deploy.transforms (segmentation); the value is None where the field is
    missing. One reader for the served pre-processing and the engine's uint8 scaling."""
    key, section, name = _IMAGE_OPS[pipeline]
    return key, (config.get(section) or {}).get(name)


def _engine_tensors(model_dir: Path):
    """([(name, numpy dtype name, full dims)] of the engine's inputs, ... of its outputs),
    as its written config serves them; full dims carry the batch dim where it batches."""
    from tritonclient.grpc import model_config_pb2

    from hpi_triton.triton_models.config import numpy_dtype, read_pbtxt

    config = read_pbtxt(model_dir / "config.pbtxt")
    batch = [-1] if config.max_batch_size > 0 else []

    def tensors(entries):
        return [(t.name, numpy_dtype(model_config_pb2.DataType.Name(t.data_type)).name,
                 batch + list(t.dims)) for t in entries]

    return tensors(config.input), tensors(config.output)
