"""Paddle Inference: the model's own program and weights, served by a Python-backend model."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from hpi_triton.triton_models.backends.base import Backend, ConvertContext, copy_files


class PaddleInferBackend(Backend):
    """Paddle Inference on CPU (oneDNN) or GPU, running the model's own program and weights."""

    name = "paddle_infer"
    aliases = ("paddle",)
    engine = "paddle"
    modules = ("paddle",)
    packages = ("paddlepaddle", "paddlepaddle-gpu")
    install_hint = "pip install paddlepaddle (paddlepaddle-gpu for GPUs)"
    devices = frozenset({"cpu", "gpu"})

    def not_applicable_reason(self, source) -> Optional[str]:
        """Return why ``source`` cannot be used (no Paddle program, ONNX only), or ``None``."""
        if not source.has_paddle:
            return f"{self.name} needs a Paddle model (inference.json or .pdmodel + .pdiparams)"
        return None

    def unavailable_reason(self, device, precision) -> Optional[str]:
        """Return why Paddle Inference cannot run here, or ``None``; GPUs need a CUDA build."""
        reason = super().unavailable_reason(device, precision)
        if reason is None and device.kind == "gpu":
            import paddle

            if not paddle.is_compiled_with_cuda():
                return f"{self.name}: the installed paddlepaddle is a CPU build"
        return reason

    def convert(self, source, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Copy the program and weights into ``out_dir``; return their engine parameters."""
        copy_files([(source.program_file, source.program_file.name),
                    (source.params_file, source.params_file.name)], out_dir)
        return {"engine": self.engine, "model_file": source.program_file.name,
                "params_file": source.params_file.name, "precision": ctx.precision,
                "onednn": "auto"}
