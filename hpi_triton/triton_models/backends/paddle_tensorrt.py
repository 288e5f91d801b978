"""Paddle Inference with its TensorRT subgraph engine (GPU builds of paddlepaddle only).

Written for real but not verified on a CPU-only machine: it reports itself unusable there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional

from hpi_triton.triton_models.backends.base import ConvertContext
from hpi_triton.triton_models.backends.paddle_infer import PaddleInferBackend


class PaddleTensorRTBackend(PaddleInferBackend):
    """Paddle Inference with its TensorRT subgraph engine, on GPU."""

    name = "paddle_tensorrt"
    aliases = ("paddle_trt",)
    devices = frozenset({"gpu"})
    precisions = frozenset({"fp32", "fp16"})
    install_hint = "a GPU build of paddlepaddle compiled with TensorRT"

    def unavailable_reason(self, device, precision) -> Optional[str]:
        """Return why Paddle-TensorRT cannot run here, or ``None``; it needs TensorRT support."""
        reason = super().unavailable_reason(device, precision)
        if reason is None:
            import paddle

            if not paddle.is_compiled_with_tensorrt():
                return f"{self.name}: the installed paddlepaddle has no TensorRT support"
        return reason

    def convert(self, source, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Copy the Paddle files; return their parameters with TensorRT on and its dynamic shapes.

        The ``[min, opt, max]`` shapes come from the Hpi ranges, else from the declared shapes with
        dynamic dims 1 (a dynamic batch dim up to ``max_batch_size`` in the max shape).
        """
        params = super().convert(source, ctx, out_dir)
        shapes = source.dynamic_shapes or {
            t.name: [[1 if d < 0 else d for d in t.shape],
                     [1 if d < 0 else d for d in t.shape],
                     [ctx.max_batch_size if (d < 0 and i == 0) else (1 if d < 0 else d)
                      for i, d in enumerate(t.shape)]]
            for t in source.inputs
        }
        params.update({"tensorrt": "on", "trt_dynamic_shapes": json.dumps(shapes),
                       "max_batch_size": str(max(ctx.max_batch_size, 1))})
        return params
