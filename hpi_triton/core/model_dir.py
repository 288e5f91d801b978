"""Reading a PaddleX model directory: ``inference.yml`` plus a Paddle program or an ONNX file.

The I/O signature (names, dtypes, declared shapes) is read from the model file itself, without
running anything: the legacy ``ProgramDesc`` protobuf, the PIR JSON program, or the ONNX graph.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml

from hpi_triton.core.cache import update_with_file
from hpi_triton.errors import InferenceConfigError, ModelDirError

INFERENCE_YML = "inference.yml"
PIR_PROGRAM = "inference.json"
LEGACY_PROGRAM = "inference.pdmodel"
PARAMS = "inference.pdiparams"
ONNX_MODEL = "inference.onnx"

DEVICES = ("cpu", "gpu")



def onnx_metadata_lines(onnx_file: Path, keys) -> Optional[List[str]]:
    """Lines of the first of ``keys`` in ``onnx_file``'s metadata (labels, charsets), or None."""
    import onnx

    model = onnx.load(str(onnx_file), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key in keys:
            return prop.value.splitlines()
    return None

@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the model file declares it (-1 marks a dynamic dim)."""

    name: str
    dtype: str
    shape: Tuple[int, ...]


@dataclass
class ModelSource:
    """One PaddleX model directory, parsed and checked.

    Attributes:
        path: The directory.
        model_name: ``Global.model_name`` from inference.yml (the dir name when absent).
        format: ``pir`` (inference.json), ``legacy`` (inference.pdmodel) or ``onnx``.
        inputs / outputs: The declared I/O signature.
        selected_backends: ``Hpi.selected_backends`` per device, names as written.
        dynamic_shapes: Per input ``[min, opt, max]`` shapes from the Hpi section.
        shape_input_data: Per input ``[min, opt, max]`` flat values (PaddleX's
            ``trt_dynamic_shape_input_data``) for inputs whose values matter, e.g. scale_factor.
        config: The whole inference.yml.
    """

    path: Path
    model_name: str
    format: str
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    selected_backends: Dict[str, str] = field(default_factory=dict)
    supported_backends: Dict[str, List[str]] = field(default_factory=dict)
    dynamic_shapes: Dict[str, List[List[int]]] = field(default_factory=dict)
    shape_input_data: Dict[str, List[List[float]]] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    _content_hash: str = field(default="", repr=False, compare=False)

    @property
    def has_paddle(self) -> bool:
        """Whether the directory holds a Paddle program (PIR or legacy)."""
        return self.format in ("pir", "legacy")

    @property
    def program_file(self) -> Optional[Path]:
        """The Paddle program (inference.json or inference.pdmodel); ``None`` for an ONNX model."""
        if self.format == "pir":
            return self.path / PIR_PROGRAM
        if self.format == "legacy":
            return self.path / LEGACY_PROGRAM
        return None

    @property
    def params_file(self) -> Optional[Path]:
        """The Paddle weights (inference.pdiparams); ``None`` without a Paddle program."""
        return self.path / PARAMS if self.has_paddle else None

    @property
    def onnx_file(self) -> Optional[Path]:
        """The directory's inference.onnx; ``None`` when it has none."""
        candidate = self.path / ONNX_MODEL
        return candidate if candidate.is_file() else None

    @property
    def model_files(self) -> List[Path]:
        """Every file whose bytes define the model (what the cache key hashes)."""
        files = [self.path / INFERENCE_YML]
        if self.has_paddle:
            files += [self.program_file, self.params_file]
        if self.onnx_file is not None:
            files.append(self.onnx_file)
        return files

    def content_hash(self) -> str:
        """SHA-256 over the model files' names and bytes (computed once per source)."""
        if self._content_hash:
            return self._content_hash
        digest = hashlib.sha256()
        for path in self.model_files:
            digest.update(path.name.encode())
            update_with_file(digest, path)
        self._content_hash = digest.hexdigest()
        return self._content_hash

    def onnx_metadata_lines(self, keys) -> Optional[List[str]]:
        """Lines of the first of ``keys`` in the ONNX model's metadata (labels, charsets)."""
        if self.onnx_file is None:
            return None
        return onnx_metadata_lines(self.onnx_file, keys)

    @property
    def batched(self) -> bool:
        """True when every input and output has a dynamic leading (batch) dim that is the
        batch: PaddleDetection exports (boxes [K,6], masks [K,H,W] plus a per-image box
        count [N]) have a leading dim that counts boxes, so Triton must not split them."""
        tensors = self.inputs + self.outputs
        box_count = len(self.outputs) > 1 and any(
            len(t.shape) == 1 and t.dtype.startswith("int") for t in self.outputs)
        return (bool(tensors) and not box_count
                and all(t.shape and t.shape[0] == -1 for t in tensors))


def load_model_dir(path: Path | str) -> ModelSource:
    """Parse and check a PaddleX model directory.

    Raises:
        ModelDirError: The directory or one of its files is missing or unreadable.
        InferenceConfigError: inference.yml has a field of the wrong form.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise ModelDirError(f"{path}: not a directory; expected a PaddleX model directory "
                            f"with {INFERENCE_YML} and the model files")
    config = read_inference_yml(path)
    model_name = (config.get("Global") or {}).get("model_name") or path.name
    fmt = _detect_format(path)
    if fmt == "onnx":
        inputs, outputs = _onnx_signature(path / ONNX_MODEL)
    elif fmt == "pir":
        inputs, outputs = _pir_signature(path / PIR_PROGRAM)
    else:
        inputs, outputs = _legacy_signature(path / LEGACY_PROGRAM)
    source = ModelSource(path=path, model_name=str(model_name), format=fmt,
                         inputs=inputs, outputs=outputs, config=config)
    _read_hpi(source, config.get("Hpi"))
    return source


def read_inference_yml(path: Path) -> dict:
    """The model directory's inference.yml as a mapping (a clear error when it is missing or
    not a mapping)."""
    yml = Path(path) / INFERENCE_YML
    if not yml.is_file():
        raise ModelDirError(f"{yml}: missing; a PaddleX model directory needs {INFERENCE_YML} "
                            f"(Global.model_name, PreProcess, PostProcess, Hpi)")
    try:
        config = yaml.safe_load(yml.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{yml}: not readable YAML ({exc}); expected PaddleX's "
                            f"inference.yml") from exc
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ModelDirError(f"{yml}: top level is a {type(config).__name__}; expected a "
                            f"mapping with Global / PreProcess / PostProcess / Hpi")
    return config


def _detect_format(path: Path) -> str:
    has_params = (path / PARAMS).is_file()
    for program, fmt in ((PIR_PROGRAM, "pir"), (LEGACY_PROGRAM, "legacy")):
        if (path / program).is_file():
            if not has_params:
                raise ModelDirError(f"{path / PARAMS}: missing; {program} needs its weights "
                                    f"file {PARAMS} beside it")
            return fmt
    if (path / ONNX_MODEL).is_file():
        return "onnx"
    raise ModelDirError(f"{path}: no model file; expected {PIR_PROGRAM} + {PARAMS}, "
                        f"{LEGACY_PROGRAM} + {PARAMS}, or {ONNX_MODEL}")


def _read_hpi(source: ModelSource, hpi) -> None:
    """Accept both the seed form (selected_backends / supported_backends) and PaddleX 3's."""
    yml = source.path / INFERENCE_YML
    if hpi is None:
        return
    if not isinstance(hpi, dict):
        raise InferenceConfigError(f"{yml}: field 'Hpi' is a {type(hpi).__name__}; expected a "
                                   f"mapping (selected_backends, backend_configs)")
    selected = hpi.get("selected_backends") or {}
    if not isinstance(selected, dict) or not all(isinstance(v, str) for v in selected.values()):
        raise InferenceConfigError(f"{yml}: field 'Hpi.selected_backends' must map a device "
                                   f"(cpu, gpu) to one backend name, e.g. {{cpu: paddle_infer}}")
    unknown_devices = set(selected) - set(DEVICES)
    if unknown_devices:
        raise InferenceConfigError(f"{yml}: field 'Hpi.selected_backends' names device(s) "
                                   f"{sorted(unknown_devices)}; expected keys among {DEVICES}")
    source.selected_backends = dict(selected)
    supported = hpi.get("supported_backends") or {}
    if not isinstance(supported, dict):
        raise InferenceConfigError(f"{yml}: field 'Hpi.supported_backends' must map a device "
                                   f"to a list of backend names")
    source.supported_backends = {k: list(v or []) for k, v in supported.items()}
    backend_configs = hpi.get("backend_configs") or hpi.get("backend_config") or {}
    if not isinstance(backend_configs, dict):
        raise InferenceConfigError(f"{yml}: field 'Hpi.backend_configs' must be a mapping of "
                                   f"backend name to settings")
    shapes: Dict[str, List[List[int]]] = {}
    for backend_name, key in (("paddle_infer", "trt_dynamic_shapes"),
                              ("paddle_tensorrt", "dynamic_shapes"),
                              ("tensorrt", "dynamic_shapes")):
        found = (backend_configs.get(backend_name) or {}).get(key)
        if found and not shapes:
            shapes = found
    input_names = {t.name for t in source.inputs}
    for name, ranges in shapes.items():
        field_name = f"Hpi.backend_configs...dynamic_shapes.{name}"
        if name not in input_names:
            raise InferenceConfigError(f"{yml}: field '{field_name}' names no input of the "
                                       f"model; inputs are {sorted(input_names)}")
        if (not isinstance(ranges, list) or len(ranges) != 3
                or not all(isinstance(r, list) and all(isinstance(d, int) for d in r)
                           for r in ranges)):
            raise InferenceConfigError(f"{yml}: field '{field_name}' must be three integer "
                                       f"shapes [min, opt, max]")
    source.dynamic_shapes = {k: [list(r) for r in v] for k, v in shapes.items()}
    data = (backend_configs.get("paddle_infer") or {}).get("trt_dynamic_shape_input_data") or {}
    source.shape_input_data = {k: [list(r) for r in v] for k, v in data.items()}


# --- I/O signatures -----------------------------------------------------------------------

_PADDLE_PROTO_DTYPES = {
    "BOOL": "bool", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
    "FP32": "float32", "FP64": "float64", "UINT8": "uint8", "INT8": "int8", "BF16": "bfloat16",
}
_PIR_DTYPES = {
    "t_bool": "bool", "t_i8": "int8", "t_ui8": "uint8", "t_i16": "int16", "t_i32": "int32",
    "t_i64": "int64", "t_f16": "float16", "t_bf16": "bfloat16", "t_f32": "float32",
    "t_f64": "float64",
}


def _legacy_signature(program: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    from paddle.base.proto import framework_pb2

    desc = framework_pb2.ProgramDesc()
    try:
        desc.ParseFromString(program.read_bytes())
    except Exception as exc:
        raise ModelDirError(f"{program}: not a Paddle ProgramDesc ({exc}); expected a model "
                            f"exported by paddle.jit.save / PaddleX") from exc
    if not desc.blocks:
        raise ModelDirError(f"{program}: the program has no blocks; the file is empty or "
                            f"truncated")
    block = desc.blocks[0]
    variables = {v.name: v for v in block.vars}
    enum = framework_pb2.VarType.Type

    def spec(name: str) -> TensorSpec:
        tensor = variables[name].type.dense_tensor.tensor
        dtype = _PADDLE_PROTO_DTYPES.get(enum.Name(tensor.data_type), "float32")
        return TensorSpec(name, dtype, tuple(int(d) for d in tensor.dims))

    feeds = sorted((op for op in block.ops if op.type == "feed"), key=_op_col)
    fetches = sorted((op for op in block.ops if op.type == "fetch"), key=_op_col)
    inputs = [spec(op.outputs[0].arguments[0]) for op in feeds]
    outputs = [spec(op.inputs[0].arguments[0]) for op in fetches]
    if not inputs or not outputs:
        raise ModelDirError(f"{program}: no feed/fetch ops; expected an inference model "
                            f"(saved with paddle.jit.save or paddle.static.save_inference_model)")
    return inputs, outputs


def _op_col(op) -> int:
    for attr in op.attrs:
        if attr.name == "col":
            return attr.i
    return 0


def _pir_attr(op: dict, name: str):
    for attr in op.get("A", []):
        if isinstance(attr, dict) and attr.get("N") == name:
            return attr["AT"]["D"]
    return None


def _pir_output_type(op: dict) -> Tuple[str, Tuple[int, ...]]:
    tensor_type = op["O"][0]["TT"]["D"]
    dtype = _PIR_DTYPES.get(tensor_type[0]["#"].split(".")[-1], "float32")
    return dtype, tuple(int(d) for d in tensor_type[1])


def _walk_pir_ops(node):
    if isinstance(node, dict):
        if "#" in node and "A" in node and "O" in node:
            yield node
        for value in node.values():
            yield from _walk_pir_ops(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_pir_ops(value)


def _pir_signature(program: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    try:
        document = json.loads(program.read_text())
        regions = document["program"]["regions"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelDirError(f"{program}: not a PIR program ({exc}); expected the inference.json "
                            f"written by paddle.jit.save in Paddle 3") from exc
    inputs: List[TensorSpec] = []
    fetched: List[Tuple[int, TensorSpec]] = []
    for op in _walk_pir_ops(regions):
        kind = str(op["#"]).split(".", 1)[-1]
        if kind == "data":
            dtype, shape = _pir_output_type(op)
            inputs.append(TensorSpec(str(_pir_attr(op, "name")), dtype, shape))
        elif kind == "fetch":
            dtype, shape = _pir_output_type(op)
            col = _pir_attr(op, "col") or 0
            fetched.append((int(col), TensorSpec(str(_pir_attr(op, "name")), dtype, shape)))
    outputs = [spec for _, spec in sorted(fetched, key=lambda item: item[0])]
    if not inputs or not outputs:
        raise ModelDirError(f"{program}: no data/fetch ops found; expected an inference "
                            f"program saved with paddle.jit.save")
    return inputs, outputs


def _onnx_signature(model: Path) -> Tuple[List[TensorSpec], List[TensorSpec]]:
    import onnx
    from onnx import helper

    try:
        graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as exc:
        raise ModelDirError(f"{model}: not a loadable ONNX model ({exc})") from exc
    initializers = {i.name for i in graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1
                     for d in tensor_type.shape.dim)
        dtype = str(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        return TensorSpec(value.name, dtype, dims)

    inputs = [spec(v) for v in graph.input if v.name not in initializers]
    outputs = [spec(v) for v in graph.output]
    if not inputs or not outputs:
        raise ModelDirError(f"{model}: the ONNX graph declares no inputs or no outputs")
    return inputs, outputs
