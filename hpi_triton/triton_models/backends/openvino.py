"""OpenVINO: IR converted from a legacy .pdmodel directly, or from ONNX (PIR models, ONNX dirs).

OpenVINO reads legacy Paddle programs but not PIR JSON, so PIR models go through paddle2onnx.
The IR keeps fp32 weights; precision is an inference hint set when the model is compiled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from hpi_triton.core.cache import device_architecture
from hpi_triton.core.isolated import run_isolated
from hpi_triton.triton_models.backends.base import Backend, ConvertContext, NativeEntry
from hpi_triton.triton_models.backends.onnx_export import ensure_onnx

IR_FILE = "model.xml"


class OpenVINOBackend(Backend):
    """OpenVINO on CPU: IR from a legacy Paddle program, or from ONNX for PIR and ONNX models."""

    name = "openvino"
    engine = "openvino"
    modules = ("openvino",)
    packages = ("openvino", "paddle2onnx")
    install_hint = "pip install openvino"
    precisions = frozenset({"fp32", "bf16", "fp16"})

    def convert(self, source, ctx: ConvertContext, out_dir: Path) -> Dict[str, str]:
        """Convert the model to OpenVINO IR (fp32 weights) in a child process.

        Returns:
            The engine parameters of the IR, ``model.xml``.

        Raises:
            ConversionError: the conversion failed, crashed or timed out.
        """
        if source.format == "legacy":
            origin = source.program_file
        else:
            origin = ensure_onnx(source, ctx)
        run_isolated("hpi_triton.triton_models.backends.openvino:to_ir",
                     {"origin": str(origin), "output": str(out_dir / IR_FILE)},
                     what=f"OpenVINO conversion of {origin}")
        return {"engine": self.engine, "model_file": IR_FILE, "precision": ctx.precision}

    def native_entry(self, params, ctx: ConvertContext) -> Optional[NativeEntry]:
        """Return Triton's native OpenVINO hosting, or ``None`` to host the model in Python.

        Python hosting is kept for fp16, and for fp32 on CPUs with bf16 units, where Triton's
        OpenVINO backend cannot pin f32 and parity with Paddle would break.
        """
        # Triton's OpenVINO backend can ask for bf16 (HINT_BF16=YES) but cannot pin f32; on a
        # CPU with bf16 units OpenVINO would then run bf16 and break parity with Paddle. Such
        # models stay in a Python-backend model, which sets INFERENCE_PRECISION_HINT=f32.
        arch = device_architecture("cpu")
        if ctx.precision == "fp32" and ("amx_bf16" in arch or "avx512_bf16" in arch):
            return None
        if ctx.precision == "fp16":
            return None
        parameters = {"PERFORMANCE_HINT": "LATENCY"}
        if ctx.cpu_threads:
            parameters["INFERENCE_NUM_THREADS"] = str(ctx.cpu_threads)
        if ctx.precision == "bf16":
            parameters["HINT_BF16"] = "YES"
        return NativeEntry(backend="openvino", default_model_filename=IR_FILE,
                           parameters=parameters)


def to_ir(origin: str, output: str) -> None:
    """Run in a child process: convert ``origin`` to IR with fp32 weights."""
    import openvino as ov

    model = ov.convert_model(origin)
    ov.save_model(model, output, compress_to_fp16=False)
