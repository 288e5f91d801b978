"""Paddle → ONNX with paddle2onnx, shared by the ONNX Runtime, OpenVINO and TensorRT backends.

The ONNX file is itself a cache entry, so three backends that need it convert once. paddle2onnx
can "succeed" and still write a graph ONNX Runtime refuses (legacy PP-OCRv4 rec); that is caught
by each backend's verification, not here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hpi_triton.core.cache import cache_key, package_versions
from hpi_triton.core.isolated import run_isolated
from hpi_triton.core.model_dir import ModelSource
from hpi_triton.errors import ConversionError
from hpi_triton.triton_models.backends.base import ConvertContext

ONNX_OPSET = 11
ONNX_FILE = "model.onnx"


def ensure_onnx(source: ModelSource, ctx: ConvertContext) -> Path:
    """Path of an ONNX file for ``source``: its own inference.onnx, or a cached conversion."""
    if source.onnx_file is not None:
        return source.onnx_file
    if not source.has_paddle:
        raise ConversionError(f"{source.path}: no Paddle model and no inference.onnx to "
                              f"convert from")
    key = cache_key(kind="onnx", model=source.content_hash(), opset=ONNX_OPSET,
                    versions=package_versions(("paddle2onnx", "paddlepaddle")))

    def create(out_dir: Path) -> dict:
        run_isolated(
            "hpi_triton.triton_models.backends.onnx_export:paddle_to_onnx",
            {"program": str(source.program_file), "params": str(source.params_file),
             "output": str(out_dir / ONNX_FILE), "opset": ONNX_OPSET},
            what=f"paddle2onnx on {source.program_file}",
        )
        return {"kind": "onnx", "source": str(source.path)}

    entry = ctx.cache.get_or_create(key, create)
    return entry.directory / ONNX_FILE


def paddle_to_onnx(program: str, params: str, output: str, opset: int) -> None:
    """Run in a child process by :func:`ensure_onnx`."""
    import paddle2onnx

    paddle2onnx.export(program, params, output, opset_version=opset,
                       enable_onnx_checker=True, verbose=False)
    if not Path(output).is_file():
        raise SystemExit(f"paddle2onnx wrote no file at {output}")


def copy_onnx(onnx_path: Path, out_dir: Path) -> None:
    """Copy the ONNX file into ``out_dir`` under the artifact's file name."""
    shutil.copyfile(onnx_path, out_dir / ONNX_FILE)
