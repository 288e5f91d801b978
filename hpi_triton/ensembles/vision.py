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
from typing import ClassVar, Dict, Optional

from hpi_triton.core.model_dir import ModelSource, read_inference_yml
from hpi_triton.ensembles.base import engine_call, image_inputs, write_python_model
from hpi_triton.ensembles.paddlex_yaml import module_entry
from hpi_triton.ensembles.registry import PipelineKind, register
from hpi_triton.ensembles.serving import PaddleXEndpoint
from hpi_triton.errors import BuildError, HpiTritonError, InferenceConfigError
from hpi_triton.generator.plan import ModelRequest, PipelineReport
from hpi_triton.python_backend import EntryPoint
from hpi_triton.python_backend.vision import vision_ops

# pipeline name → its one role (PaddleX SubModules name), from the task classes the served
# models use too
ROLES = {name: task.role for name, task in vision_ops.TASKS.items()}
# outputs that travel as tensors beside the JSON result: name → (dtype, dims); the label
# map's dtype is the pipeline's ``label_dtype`` (see SemanticSegmentationBuild._label_dtype)
ARRAY_OUTPUTS = {name: task.array_outputs for name, task in vision_ops.TASKS.items()
                 if task.array_outputs}
# Label map dtypes a semantic segmentation pipeline may serve (--param label_dtype=...).
LABEL_DTYPES = ("uint8", "int32")


@dataclass
class VisionPipeline(PipelineKind):
    """A single-model vision pipeline (``--pipeline image_classification --model
    ImageClassification=DIR``); one registered subclass per task (:func:`register_task`).

    ``served_name`` names the graph model (default: the pipeline name) and prefixes its engine
    model, so one repository can serve several models of the same pipeline."""

    #: The task's build-time half (set on each task's subclass).
    task_build: ClassVar[TaskBuild] = None

    name: str
    roles: Dict[str, Path]
    params: dict = field(default_factory=dict)
    backends: Dict[str, str] = field(default_factory=dict)
    instances: int = 2
    served_name: Optional[str] = None

    def __post_init__(self):
        served = vision_ops.TASKS[self.name]
        role = served.role
        if set(self.roles) != {role}:
            raise BuildError(f"pipeline {self.name} takes exactly --model {role}=DIR; got "
                             f"roles {sorted(self.roles)}")
        self.role = role
        self.served_name = self.served_name or self.name
        # Checked now, before any conversion: a bad --param fails in a second.
        build_only = {k: v for k, v in self.params.items()
                      if k in self.build.build_parameters}
        try:
            given = served.request_parameters.coerce(
                {k: v for k, v in self.params.items() if k not in build_only}, {})
        except vision_ops.ParameterError as exc:
            raise BuildError(f"pipeline {self.name}: {exc}") from exc
        self.params = {**given, **build_only}

    @classmethod
    def create(cls, roles, params, backends, instances, served_name):
        """One pipeline of this task, served as ``served_name`` (default: the task's name)."""
        return cls(name=cls.pipeline_name, roles=dict(roles), params=dict(params),
                   backends=dict(backends), instances=instances, served_name=served_name)

    @classmethod
    def paddlex_config(cls, report: Dict, entry: Dict) -> Dict:
        """PaddleX's config of this single-model pipeline: its one SubModule, with the
        served defaults of the parameters its predict() takes."""
        kind, params = entry["pipeline"], entry.get("params") or {}
        role = vision_ops.TASKS[kind].role
        sub = module_entry(report, role, entry["roles"][role], kind)
        sub["batch_size"] = 1
        for name in cls.predict_params:
            value = params.get(name)
            sub[name] = None if name == "target_size" and value in (None, -1) else value
        return {"pipeline_name": kind, "SubModules": {role: sub}}

    @property
    def engine_name(self) -> str:
        """The engine model's name: ``<served_name>_<Role>``."""
        return f"{self.served_name}_{self.role}"

    @property
    def build(self) -> TaskBuild:
        """How this pipeline's task reads its model directory at build time."""
        return type(self).task_build or TASK_BUILDS[self.name]

    def model_requests(self):
        """The one engine model this pipeline needs built (uint8 image input where the engine
        can normalise, uint8 label output where the label map is served as uint8)."""
        path = Path(self.roles[self.role])
        return [ModelRequest(self.engine_name, path, self.backends.get(self.role),
                             uint8_inputs=self._uint8_inputs(path),
                             uint8_outputs=self.build.uint8_outputs(self.params))]

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
        _, ops = self.build.image_ops(config)
        try:
            scaling = vision_ops.deferred_scaling(self.name, ops if isinstance(ops, list) else [])
        except (AttributeError, TypeError, ValueError, StopIteration):
            return {}  # malformed ops: graph_settings() names the field when the graph is written
        return {0: scaling} if scaling else {}

    def graph_settings(self, source: ModelSource) -> vision_ops.VisionSettings:
        """The graph's settings for its engine built from ``source``: the task's own fields
        (:meth:`TaskBuild.settings`), the engine call and the per-request defaults.

        Raises:
            InferenceConfigError: A field the task needs is missing or malformed.
            BuildError: A parameter has a value the task cannot serve.
        """
        defaults = {"task": self.name, "max_pixels": vision_ops.MAX_PIXELS.default}
        task_fields, task_defaults = self.build.settings(source, self.params)
        defaults.update(task_defaults)
        try:
            params = {k: v for k, v in self.params.items()
                      if k not in self.build.build_parameters}
            params = vision_ops.coerce_parameters(params, defaults)
        except vision_ops.ParameterError as exc:
            raise BuildError(f"pipeline {self.name}: {exc}") from exc
        return vision_ops.VisionSettings(task=self.name,
                                         model=engine_call(self.engine_name, source),
                                         params=params, **task_fields)

    def _settings(self, source: ModelSource) -> dict:
        """:meth:`graph_settings` as the JSON the graph's models are configured with (what
        in-process baselines pass to :func:`vision_ops.run_task`)."""
        return self.graph_settings(source).to_json()

    @property
    def graph_models(self):
        """The models this pipeline writes besides its engine."""
        return [self.served_name, self.preprocess_name, self.postprocess_name]

    @property
    def preprocess_name(self) -> str:
        """The pre-processing model's name."""
        return f"{self.served_name}_preprocess"

    @property
    def postprocess_name(self) -> str:
        """The post-processing model's name."""
        return f"{self.served_name}_postprocess"

    def write(self, repo: Path, sources: Dict[str, ModelSource], reports: Dict[str, object]):
        """Write the pre/post-processing models and the ensemble over the built engine; the
        pipeline's report entry."""
        from hpi_triton.triton_models.config import TensorConfig, TritonModelConfig

        settings = self.graph_settings(sources[self.engine_name])
        engine_inputs, engine_outputs = _engine_tensors(reports[self.engine_name].config)
        # The pre-processing model emits the engine's inputs in the source model's order.
        order = settings.model[1]
        if sorted(n for n, _, _ in engine_inputs) == sorted(order):
            engine_inputs.sort(key=lambda tensor: order.index(tensor[0]))
        engine_outputs = engine_outputs[:vision_ops.used_outputs(settings, len(engine_outputs))]
        feeds = [TensorConfig(f"input_{i}", dtype, dims)
                 for i, (_, dtype, dims) in enumerate(engine_inputs)]
        fetched = [TensorConfig(f"output_{i}", dtype, dims)
                   for i, (_, dtype, dims) in enumerate(engine_outputs)]
        context = TensorConfig("context", "object", [1])
        arrays = [TensorConfig(out, dtype or settings.label_dtype, dims)
                  for out, (dtype, dims) in ARRAY_OUTPUTS.get(self.name, {}).items()]
        result = [TensorConfig("result", "object", [1])] + arrays
        write_python_model(repo, self.preprocess_name, EntryPoint.VISION_PRE,
                           settings.to_json(), self.instances, image_inputs(),
                           feeds + [context])
        write_python_model(repo, self.postprocess_name, EntryPoint.VISION_POST,
                           settings.to_json(), self.instances, fetched + [context], result)

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
        return PipelineReport(
            self.name, self.served_name, {self.role: settings.model}, settings.params,
            steps=[self.preprocess_name, self.engine_name, self.postprocess_name],
            license_check=self.preprocess_name)


class TaskBuild:
    """The build-time half of a vision task: what its graph settings read from the model
    directory (inference.yml, the engine's tensors) and which ``--param`` values only the
    build takes. The served half is :class:`vision_ops.VisionTask`, looked up by the same
    name."""

    #: The task's pipeline name (a key of :data:`vision_ops.TASKS`).
    name = ""
    #: (graph settings key, inference.yml section, field) of its image pre-processing ops.
    image_ops_field = None
    #: ``--param`` names the build consumes (not per-request parameters).
    build_parameters: tuple = ()
    #: The pipeline's one line for --help and the README.
    summary = ""
    #: What its pre/post-processing imports besides numpy and OpenCV.
    packages: tuple = ()
    #: The per-request parameters PaddleX's predict() takes (compare passes them on).
    predict_params: tuple = ()
    #: (PaddleX serving path, result → PaddleX's ``result`` fields), None where PaddleX's
    #: service has no endpoint for the task.
    paddlex_api: Optional[tuple] = None

    def paddlex_endpoint(self) -> Optional[PaddleXEndpoint]:
        """The PaddleX serving endpoint of the task's pipeline (request fields from its
        served request parameters), or None."""
        if self.paddlex_api is None:
            return None
        path, convert = self.paddlex_api
        parameters = vision_ops.TASKS[self.name].request_parameters
        return PaddleXEndpoint(path, "", "image", parameters, convert=convert)

    def image_ops(self, config: dict):
        """(settings key, inference.yml value) of the image pre-processing ops the graph's
        normalisation comes from; the value is None where the field is missing. One reader for
        the served pre-processing and the engine's uint8 scaling."""
        key, section, name = self.image_ops_field
        return key, (config.get(section) or {}).get(name)

    def uint8_outputs(self, params: dict) -> tuple:
        """Indices of engine outputs to serve as uint8."""
        return ()

    def settings(self, source: ModelSource, params: dict):
        """(the task's own :class:`vision_ops.VisionSettings` fields by name, per-request
        parameter defaults) read from ``source``.

        Raises:
            InferenceConfigError: A field the task needs is missing or malformed.
            BuildError: A build parameter has a value the task cannot serve.
        """
        raise NotImplementedError


def categories(result: Dict) -> Dict:
    """image_classification → PaddleX's ``categories`` (id, name, score)."""
    ids = result.get("class_ids") or []
    names = result.get("label_names") or [str(i) for i in ids]
    return {"categories": [{"id": int(i), "name": n, "score": float(s)}
                           for i, n, s in zip(ids, names, result.get("scores") or [])]}


def detected_objects(result: Dict) -> Dict:
    """object_detection → PaddleX's ``detectedObjects`` (bbox, categoryId, categoryName,
    score)."""
    return {"detectedObjects": [{"bbox": box["coordinate"], "categoryId": int(box["cls_id"]),
                                 "categoryName": box["label"], "score": float(box["score"])}
                                for box in result.get("boxes") or []]}


def label_map(result: Dict) -> Dict:
    """semantic_segmentation → PaddleX's ``labelMap`` (row-major labels) and ``size``
    ([height, width])."""
    import numpy as np

    pred = np.asarray(result["pred"])
    pred = pred.reshape(pred.shape[-2:])
    return {"labelMap": pred.reshape(-1).tolist(), "size": [int(pred.shape[0]),
                                                           int(pred.shape[1])]}


def coco_rle(mask) -> str:
    """A binary mask as COCO's compressed RLE string (``pycocotools.mask.encode``'s
    ``counts``): column-major runs starting with zeros, each the difference to the run two
    before (from the third), in 5-bit groups offset by 48."""
    import numpy as np

    flat = (np.asarray(mask).reshape(np.asarray(mask).shape[:2]) != 0).ravel(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | 0x20 if more else c) + 48))
    return "".join(out)


def instances(result: Dict) -> Dict:
    """instance_segmentation → PaddleX's ``instances``: each box with its mask cropped to the
    box (PaddleX 3.7's masks are; ``int(round())`` of the coordinates) as COCO RLE."""
    import numpy as np

    masks = np.asarray(result.get("masks", np.zeros((0, 0, 0), np.uint8)))
    found = []
    for box, mask in zip(result.get("boxes") or [], masks):
        x1, y1, x2, y2 = (int(round(v)) for v in box["coordinate"])
        crop = mask[y1:y2, x1:x2]
        found.append({"bbox": box["coordinate"], "categoryId": int(box["cls_id"]),
                      "categoryName": box["label"], "score": float(box["score"]),
                      "mask": {"rleResult": coco_rle(crop),
                               "size": [int(crop.shape[0]), int(crop.shape[1])]}})
    return {"instances": found}


class ClassificationBuild(TaskBuild):
    """image_classification: PaddleX's transform_ops, label list and Topk."""

    name = "image_classification"
    summary = "top-k classes of an image"
    packages = ("Pillow",)  # PaddleX's resize with backend: pil
    predict_params = ("topk",)
    paddlex_api = ("/image-classification", categories)
    image_ops_field = ("preprocess", "PreProcess", "transform_ops")

    def settings(self, source, params):
        """Transform ops, label list and Topk default from inference.yml."""
        _, ops = self.image_ops(source.config)
        if not ops:
            raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                                       f"'PreProcess.transform_ops' is missing; image "
                                       f"classification needs ResizeImage / NormalizeImage")
        topk_cfg = (source.config.get("PostProcess") or {}).get("Topk") or {}
        return ({"preprocess": ops, "labels": topk_cfg.get("label_list")},
                {"topk": int(topk_cfg.get("topk", 5))})


class DetectionBuild(TaskBuild):
    """object_detection: PaddleDetection's Preprocess, NMS and the export's head kind."""

    name = "object_detection"
    summary = "boxes with classes and scores"
    predict_params = ("threshold",)
    paddlex_api = ("/object-detection", detected_objects)

    def settings(self, source, params):
        """Pre-processing ops, input names, labels, NMS and head kind; the threshold default."""
        settings = {**self._preprocess(source), **self._head(source)}
        return settings, {"threshold": float(source.config.get("draw_threshold", 0.5))}

    def _preprocess(self, source: ModelSource) -> dict:
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
        labels = source.config.get("label_list") or source.onnx_metadata_lines(
            ("character", "label_list"))
        return {"preprocess": ops, "inputs": inputs, "labels": labels,
                "nms": source.config.get("NMS") or {}}

    def _head(self, source: ModelSource) -> dict:
        outputs = source.outputs
        if len(outputs) == 2 and outputs[0].shape[-1] == 6:
            return {"head": "nms_inside"}
        if len(outputs) >= 4 and len(outputs) % 2 == 0:
            strides = source.config.get("fpn_stride")
            if not strides or len(strides) != len(outputs) // 2:
                raise InferenceConfigError(
                    f"{source.path / 'inference.yml'}: field 'fpn_stride' must list one stride "
                    f"per head ({len(outputs) // 2}) for a detector exported without NMS")
            return {"head": "picodet", "fpn_stride": list(strides)}
        raise InferenceConfigError(
            f"{source.path}: detection outputs {[t.name for t in outputs]} are neither "
            f"NMS output (boxes [N,6] + box count) nor PicoDet score/box heads")


class InstanceSegmentationBuild(DetectionBuild):
    """instance_segmentation: detection settings for a Mask-RT-DETR / Mask R-CNN export."""

    name = "instance_segmentation"
    summary = "boxes with per-instance masks"
    predict_params = ("threshold",)
    paddlex_api = ("/instance-segmentation", instances)

    def _head(self, source):
        # Mask-RT-DETR / Mask R-CNN exports: boxes [K,6], box count, masks [K,H,W]
        outputs = source.outputs
        if len(outputs) != 3 or outputs[0].shape[-1] != 6 or len(outputs[2].shape) != 3:
            raise InferenceConfigError(
                f"{source.path}: instance segmentation outputs "
                f"{[(t.name, t.shape) for t in outputs]}; expected boxes [K,6], box count "
                f"and masks [K,H,W] (Mask-RT-DETR export)")
        return {"head": "nms_inside"}


class SemanticSegmentationBuild(TaskBuild):
    """semantic_segmentation: PaddleSeg's Deploy.transforms and the label map's dtype."""

    name = "semantic_segmentation"
    summary = "a class label per pixel"
    predict_params = ("target_size",)
    paddlex_api = ("/semantic-segmentation", label_map)
    image_ops_field = ("transforms", "Deploy", "transforms")
    build_parameters = ("label_dtype",)

    def uint8_outputs(self, params):
        """The label output (index 0) as uint8 unless ``label_dtype=int32`` was asked."""
        # A uint8 label map leaves the engine model as uint8 already (integer label outputs
        # only: logits stay float and the post-processing model takes their argmax).
        return (0,) if str(params.get("label_dtype", "uint8")) == "uint8" else ()

    def settings(self, source, params):
        """Deploy.transforms and the label map dtype."""
        _, transforms = self.image_ops(source.config)
        if not isinstance(transforms, list):
            raise InferenceConfigError(f"{source.path / 'inference.yml'}: field "
                                       f"'Deploy.transforms' is missing; semantic "
                                       f"segmentation needs PaddleSeg's Deploy section")
        return {"transforms": transforms, "label_dtype": self._label_dtype(source, params)}, {}

    def _label_dtype(self, source: ModelSource, params: dict) -> str:
        """The served label map's dtype: ``uint8`` (a quarter of INT32's bytes on the wire;
        PaddleSeg itself saves label maps as 8-bit PNGs) unless the user asks for ``int32``
        (``--param label_dtype=int32``) or the engine's logits show more than 256 classes."""
        asked = params.get("label_dtype")
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


#: The build-time half of every vision task, by pipeline name (the same keys as
#: :data:`vision_ops.TASKS`; tests/unit checks they match).
TASK_BUILDS: Dict[str, TaskBuild] = {}


def register_task(build: TaskBuild) -> type:
    """Declare the vision pipeline of ``build``'s task (its served half is
    ``vision_ops.TASKS[build.name]``): a registered :class:`VisionPipeline` subclass."""
    TASK_BUILDS[build.name] = build
    served = vision_ops.TASKS[build.name]
    words = "".join(part.title() for part in build.name.split("_"))
    return register(type(f"{words}Pipeline", (VisionPipeline,), {
        "pipeline_name": build.name, "summary": build.summary, "packages": build.packages,
        "predict_params": build.predict_params, "task_build": build,
        "paddlex_endpoint": build.paddlex_endpoint(),
        "parameters": served.request_parameters, "required_roles": (served.role,),
        "__module__": __name__, "__doc__": build.summary}))


for _build in (ClassificationBuild(), DetectionBuild(), SemanticSegmentationBuild(),
               InstanceSegmentationBuild()):
    register_task(_build)


def layout_settings(engine_name: str, model_dir: Path, source) -> dict:
    """The object-detection settings a document graph runs its LayoutDetection engine
    ``engine_name`` (built from ``model_dir``, parsed as ``source``) with: vision_ops'
    detection pre/post-processing, called in-graph instead of through an ensemble. As JSON
    (:class:`vision_ops.VisionSettings`' ``to_json``), the form the document graphs' own
    settings carry it in; :func:`vision_ops.detect_layout` reads it back."""
    layout = VisionPipeline("object_detection", {"ObjectDetection": model_dir})
    settings = layout.graph_settings(source)
    settings.model = [engine_name, *settings.model[1:]]
    return settings.to_json()


def _engine_tensors(config):
    """([(name, numpy dtype name, full dims)] of the engine's inputs, ... of its outputs),
    as the build's emitted config (``ModelReport.config``) serves them; full dims carry the
    batch dim where it batches."""
    batch = [-1] if config.max_batch_size > 0 else []

    def tensors(entries):
        return [(t.name, str(t.dtype), batch + [int(d) for d in t.dims]) for t in entries]

    return tensors(config.inputs), tensors(config.outputs)
