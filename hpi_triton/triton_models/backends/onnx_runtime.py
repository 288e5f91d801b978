"""ONNX Runtime: the model's own ONNX, or Paddle converted with paddle2onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from hpi_triton.triton_models.backends.base import Backend, ConvertContext, NativeEntry
from hpi_triton.triton_models.backends.onnx_export import ONNX_FILE, copy_onnx, ensure_onnx


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime on CPU or CUDA: the model's own ONNX, or one converted with paddle2onnx."""

    name = "onnx_runtime"
    aliases = ("onnxruntime", "ort")
    engine = "onnxruntime"
    modules = ("onnxruntime",)
    packages = ("onnxruntime", "onnxruntime-gpu", "paddle2onnx")
    install_hint = "pip install onnxruntime (onnxruntime-gpu for GPUs)"
    devices = frozenset({"cpu", "gpu"})

    def unavailable_reason(self, device, precision) -> Optional[str]:
        """Return why ONNX Runtime cannot run here, or ``None``; on GPU it needs CUDA support."""
        reason = super().unavailable_reason(device, precision)
        if reason is None and device.kind == "gpu":
            from hpi_triton.python_backend.engines import onnxruntime_cuda_problem

            # get_available_providers() lists CUDA for every GPU wheel, even one whose CUDA
            # libraries are missing (its sessions then run on the CPU): load the provider.
            problem = onnxruntime_cuda_problem()
            if problem:
                return f"onnx_runtime: {problem}"
        return reason

    def convert(self, source, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Copy the model's ONNX (converted from Paddle if needed) into ``out_dir``.

        Returns:
            The engine parameters of the copied ``model.onnx``.
        """
        copy_onnx(ensure_onnx(source, ctx), out_dir)
        return {"engine": self.engine, "model_file": ONNX_FILE, "precision": ctx.precision}

    def native_entry(self, params, ctx: ConvertContext) -> NativeEntry:
        """Return Triton's native ONNX Runtime hosting of the ONNX file.

        One inter-op thread; ``cpu_threads`` intra-op threads when the build sets it.
        """
        parameters = {"inter_op_thread_count": "1"}
        if ctx.cpu_threads:
            parameters["intra_op_thread_count"] = str(ctx.cpu_threads)
        return NativeEntry(platform="onnxruntime_onnx", default_model_filename=ONNX_FILE,
                           parameters=parameters)
