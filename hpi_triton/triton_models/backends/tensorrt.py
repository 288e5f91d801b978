"""TensorRT: a serialized engine built from ONNX, one optimization profile from the Hpi ranges.

Written for real but not verified on a CPU-only machine: it reports itself unusable there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

from hpi_triton.core.isolated import run_isolated
from hpi_triton.errors import ConversionError
from hpi_triton.triton_models.backends.base import Backend, ConvertContext, NativeEntry
from hpi_triton.triton_models.backends.onnx_export import ensure_onnx

PLAN_FILE = "model.plan"


class TensorRTBackend(Backend):
    """TensorRT on GPU: a serialized engine built from ONNX with one optimization profile."""

    name = "tensorrt"
    aliases = ("trt",)
    engine = "tensorrt"
    modules = ("tensorrt", "cuda")
    packages = ("tensorrt", "cuda-python")
    install_hint = ("pip install tensorrt cuda-python from NVIDIA's index (PIP_CONSTRAINT="
                    "deploy/constraints.txt pip install --extra-index-url "
                    "https://pypi.nvidia.com 'hpi-triton[gpu,tensorrt]'; PyPI's are stubs), "
                    "on a machine with an NVIDIA GPU")
    devices = frozenset({"gpu"})
    precisions = frozenset({"fp32", "fp16"})

    def convert(self, source, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Build a TensorRT engine from the model's ONNX in a child process; return its parameters.

        Raises:
            ConversionError: an input has dynamic dims but no Hpi ranges, or the build failed.
        """
        profile = profile_shapes(source, ctx.max_batch_size)
        run_isolated("hpi_triton.triton_models.backends.tensorrt:build_engine",
                     {"onnx_path": str(ensure_onnx(source, ctx)),
                      "output": str(out_dir / PLAN_FILE),
                      "profile": json.dumps(profile), "fp16": ctx.precision == "fp16",
                      "device_id": ctx.device.index},
                     what=f"TensorRT engine build for {source.path}")
        return {"engine": self.engine, "model_file": PLAN_FILE, "precision": ctx.precision}

    def native_entry(self, params, ctx: ConvertContext) -> NativeEntry:
        """Return Triton's native TensorRT hosting of the plan file."""
        return NativeEntry(platform="tensorrt_plan", default_model_filename=PLAN_FILE)


def profile_shapes(source, max_batch_size: int) -> Dict[str, list]:
    """``{input: [min, opt, max]}`` from the Hpi ranges, else from the declared shape."""
    if source.dynamic_shapes:
        return source.dynamic_shapes
    profile = {}
    for tensor in source.inputs:
        if any(d < 0 for d in tensor.shape[1:]):
            raise ConversionError(
                f"{source.path}: input '{tensor.name}' has dynamic dims {list(tensor.shape)} "
                f"and inference.yml gives no Hpi.backend_configs.tensorrt.dynamic_shapes; "
                f"TensorRT needs [min, opt, max] shapes for it")
        rest = list(tensor.shape[1:])
        top = max(max_batch_size, 1) if tensor.shape[0] < 0 else tensor.shape[0]
        low = 1 if tensor.shape[0] < 0 else tensor.shape[0]
        profile[tensor.name] = [[low] + rest, [low] + rest, [top] + rest]
    return profile


def build_engine(onnx_path: str, output: str, profile: str, fp16: bool, device_id: int) -> None:
    """Run in a child process: parse ONNX, add the optimization profile, serialize."""
    import tensorrt as trt

    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # cuda-python < 12.6
        from cuda import cudart

    cudart.cudaSetDevice(device_id)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SystemExit(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 31)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in json.loads(profile).items():
        opt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(opt_profile)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise SystemExit("TensorRT failed to build the engine")
    Path(output).write_bytes(bytes(engine))
