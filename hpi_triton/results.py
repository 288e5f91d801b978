"""One pipeline result per input, and saving it the way PaddleX does (``save_to_json``,
``save_to_img``).

PaddleX's results print and save as ``{"res": {"input_path": ..., "page_index": ..., <the
pipeline's fields>}}``; the served graphs return the pipeline's fields, so a
:class:`Prediction` adds the input's path and page. Fields that travel as tensors (label
maps, instance masks, the doc preprocessor's corrected image) are saved beside the JSON and
named in it, as ``hpi-triton infer --output-dir`` always did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from hpi_triton.errors import HpiTritonError, InferError
from hpi_triton.inputs import InputItem, decode_for_drawing


@dataclass
class Prediction:
    """The outcome of one input of ``predict_many``: its result or its error.

    Attributes:
        index: Position among the expanded inputs (results come in this order).
        input_path: The input's path or label (``bytes[N]``, ``array[HxWx3]``).
        page_index: The PDF page (from 0), ``None`` for images.
        pipeline: The served pipeline's name.
        result: PaddleX's result fields (``None`` when the input failed).
        error: Why the input failed (``None`` when it did not).
    """

    index: int
    input_path: str
    page_index: Optional[int]
    pipeline: str
    result: Optional[dict] = None
    error: Optional[HpiTritonError] = None
    item: Optional[InputItem] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the input got a result."""
        return self.error is None

    def raise_for_error(self) -> dict:
        """The result; raises the input's error when it failed."""
        if self.error is not None:
            raise self.error
        return self.result

    def json(self, arrays: Optional[Dict[str, str]] = None) -> dict:
        """PaddleX's shape: ``{"res": {"input_path", "page_index", fields...}}``.

        Args:
            arrays: Tensor field → the file it was saved to; without one, label maps and masks
                are written as nested lists and images as their byte count.
        """
        fields = {}
        for key, value in self.raise_for_error().items():
            if isinstance(value, np.ndarray):
                value = (arrays or {}).get(key) or _inline(key, value)
            fields[key] = value
        return {"res": {"input_path": self.input_path, "page_index": self.page_index,
                        **fields}}

    def stem(self) -> str:
        """The file-name stem results of this input are saved under."""
        if self.item is not None:
            return self.item.stem
        return f"input_{self.index}"

    def save_arrays(self, directory: Union[str, Path]) -> Dict[str, str]:
        """Save the tensor fields (``*_img``: PNG bytes → .png; others → .npy) into
        ``directory``; field → the file written."""
        directory = Path(directory)
        saved = {}
        for key, value in self.raise_for_error().items():
            if not isinstance(value, np.ndarray):
                continue
            directory.mkdir(parents=True, exist_ok=True)
            if key.endswith("_img"):
                target = directory / f"{self.stem()}_{key}.png"
                target.write_bytes(value.tobytes())
            else:
                target = directory / f"{self.stem()}_{key}.npy"
                np.save(target, value)
            saved[key] = str(target)
        return saved

    def save_to_json(self, directory: Union[str, Path],
                     arrays: Optional[Dict[str, str]] = None) -> Path:
        """Write ``<stem>_res.json`` into ``directory``, and the tensor fields beside it unless
        ``arrays`` (field → file, from :meth:`save_arrays`) says where they already are."""
        directory = Path(directory)
        if arrays is None:
            arrays = self.save_arrays(directory)
        target = directory / f"{self.stem()}_res.json"
        _atomic_write(target, json.dumps(self.json(arrays), ensure_ascii=False,
                                         indent=2).encode("utf-8"))
        return target

    def image(self) -> np.ndarray:
        """The input as an RGB uint8 array, read again from its source (a file is read, a PDF
        page rendered anew: results do not hold their inputs' pixels)."""
        data = self.item.load() if self.item is not None and self.item.load else None
        if data is None:
            raise InferError(f"input {self.input_path!r}: its image is no longer available")
        try:
            return decode_for_drawing(data)
        except (OSError, ValueError) as exc:
            raise InferError(f"input {self.input_path!r} cannot be decoded for drawing "
                             f"({exc})") from exc

    def draw(self) -> np.ndarray:
        """The result drawn on its input (RGB uint8), in the spirit of PaddleX's
        ``save_to_img``: boxes and texts, table cells, seals, layout blocks, detections,
        masks, label maps, the class label, the corrected document."""
        from hpi_triton.visualize import draw_result

        return draw_result(self.image(), self.raise_for_error())

    def save_to_img(self, directory: Union[str, Path]) -> Path:
        """Write the drawn result as ``<stem>_res.png`` into ``directory``."""
        from PIL import Image

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{self.stem()}_res.png"
        partial = target.with_name(f".{target.name}.partial")
        Image.fromarray(self.draw()).save(partial, format="PNG")
        partial.replace(target)
        return target


def _inline(key: str, value: np.ndarray):
    if key.endswith("_img"):
        return {"png_bytes": int(value.size), "hint": "save_to_json / --output-dir saves it"}
    return value.tolist()


def _atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary file: never a half-written result."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)
