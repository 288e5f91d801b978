"""What a user hands ``predict_many`` / ``hpi-triton infer``, as one input per image or page.

Accepted, as PaddleX's ``predict`` accepts them: file paths, directories (their images and
PDFs, sorted by name, not recursive), glob patterns, encoded image bytes, decoded uint8
arrays, and PDFs, each page one input rendered with pypdfium2 at a stated DPI (PaddleX renders
at zoom 2.0, i.e. 144 DPI, with the same library). Expansion is cheap and happens up front so
results can be numbered; reading and rendering happen when an input is sent, so a folder of
large images or a long PDF is never held in memory at once.
"""

from __future__ import annotations

import glob
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

import numpy as np

from hpi_triton.errors import InputError

#: File suffixes read as images (what the served graphs decode) and as PDFs.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
PDF_SUFFIXES = (".pdf",)
#: PaddleX's PDF rendering: pypdfium2 at zoom 2.0 = 144 DPI.
DEFAULT_PDF_DPI = 144
#: Pages above this many pixels are refused before rendering (a 40 MP page at 144 DPI is a
#: 4 m² sheet; the server's own limit is lower, see ``max_pixels``).
MAX_PAGE_PIXELS = 100_000_000

Source = Union[str, Path, bytes, bytearray, memoryview, np.ndarray]


@dataclass
class InputItem:
    """One image to send: where it came from and how to get its bytes or pixels.

    ``load()`` returns encoded bytes (sent as the graphs' ``image`` input) or a uint8 BGR
    array (sent as ``image_array``); it raises :class:`InputError` when the input cannot be
    read. ``error`` is set instead of ``load`` when the input was refused while expanding.
    """

    index: int
    label: str
    page_index: Optional[int] = None
    load: Optional[Callable[[], Union[bytes, np.ndarray]]] = None
    error: Optional[InputError] = None
    path: Optional[Path] = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        """A file-name stem for saved results: the file's stem (``_<page>`` for PDF pages)."""
        base = self.path.stem if self.path is not None else self.label.replace("/", "_")
        return base if self.page_index is None else f"{base}_{self.page_index}"


def expand(inputs: Union[Source, Iterable[Source]], dpi: int = DEFAULT_PDF_DPI,
           password: Optional[str] = None) -> List[InputItem]:
    """Every image or PDF page of ``inputs``, in the order given.

    Args:
        inputs: One source or an iterable of them: a path (file or directory), a glob
            pattern, encoded image bytes, a uint8 array (BGR HxWx3 or HxW gray), or an
            :class:`InputItem` from an earlier call (renumbered).
        dpi: Resolution PDF pages are rendered at (PaddleX: 144).
        password: Password of encrypted PDFs.

    Returns:
        One :class:`InputItem` per image or page; a source that cannot be expanded (no such
        file, a corrupt PDF, an empty directory) becomes one item carrying its error, so the
        other inputs still run.

    Raises:
        InputError: ``dpi`` is not positive, or ``inputs`` holds something of another type.
    """
    if not isinstance(dpi, (int, float)) or dpi <= 0:
        raise InputError(f"dpi={dpi!r}; expected a positive number (PaddleX renders PDFs at "
                         f"{DEFAULT_PDF_DPI})")
    if isinstance(inputs, (str, Path, bytes, bytearray, memoryview, np.ndarray, InputItem)):
        inputs = [inputs]
    items: List[InputItem] = []
    for source in inputs:
        for item in _expand_one(source, dpi, password):
            item.index = len(items)
            items.append(item)
    return items


def _expand_one(source: Source, dpi: float, password: Optional[str]) -> Iterator[InputItem]:
    if isinstance(source, InputItem):  # expanded already (e.g. to count them first)
        yield source
    elif isinstance(source, np.ndarray):
        yield InputItem(0, f"array[{'x'.join(map(str, source.shape))}]",
                        load=lambda array=source: array)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if data[:5] == b"%PDF-":
            yield from _pdf_pages(f"bytes[{len(data)}]", data, None, dpi, password)
        else:
            yield InputItem(0, f"bytes[{len(data)}]", load=lambda data=data: data)
    elif isinstance(source, (str, Path)):
        yield from _expand_path(source, dpi, password)
    else:
        raise InputError(f"input is a {type(source).__name__}; expected a path, a glob, a "
                         f"directory, bytes, a uint8 numpy array or a PDF")


def _expand_path(source: Union[str, Path], dpi: float,
                 password: Optional[str]) -> Iterator[InputItem]:
    path = Path(source)
    if isinstance(source, str) and not path.exists() and glob.has_magic(source):
        matches = sorted(Path(p) for p in glob.glob(source))
        files = [p for p in matches if p.is_file() and _readable_suffix(p)]
        if not files:
            yield _refused(source, f"the pattern {source!r} matches no image or PDF file")
        for file in files:
            yield from _expand_file(file, dpi, password)
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and _readable_suffix(p))
        if not files:
            yield _refused(str(path), f"directory {str(path)!r} holds no image or PDF "
                           f"({', '.join(IMAGE_SUFFIXES + PDF_SUFFIXES)})")
        for file in files:
            yield from _expand_file(file, dpi, password)
    elif path.is_file():
        yield from _expand_file(path, dpi, password)
    else:
        yield _refused(str(path), f"input {str(path)!r} does not exist")


def _readable_suffix(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + PDF_SUFFIXES


def _expand_file(path: Path, dpi: float, password: Optional[str]) -> Iterator[InputItem]:
    if path.suffix.lower() in PDF_SUFFIXES:
        yield from _pdf_pages(str(path), path, path, dpi, password)
    else:
        yield InputItem(0, str(path), load=lambda path=path: _read_bytes(path), path=path)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"image {str(path)!r} cannot be read: {exc}") from exc


def _refused(label: str, message: str) -> InputItem:
    return InputItem(0, label, error=InputError(message))


#: pdfium is not thread-safe: one document / render at a time in this process, whoever renders
#: (the client here, PaddleX's API in paddlex_api.files).
PDFIUM_LOCK = threading.Lock()


def _pdf_pages(label: str, data: Union[bytes, Path], path: Optional[Path], dpi: float,
               password: Optional[str]) -> Iterator[InputItem]:
    try:
        import pypdfium2 as pdfium
    except ImportError:  # a core dependency; only a broken install lacks it
        yield _refused(label, "reading PDFs needs pypdfium2: pip install pypdfium2")
        return
    try:
        with PDFIUM_LOCK:
            document = pdfium.PdfDocument(data if isinstance(data, bytes) else str(data),
                                          password=password)
            count = len(document)
    except (pdfium.PdfiumError, OSError) as exc:
        yield _refused(label, f"PDF {label!r} cannot be opened ({exc}); expected a valid, "
                              f"unencrypted PDF or its password")
        return
    if count == 0:
        yield _refused(label, f"PDF {label!r} has no pages")
        return
    for page_index in range(count):
        yield InputItem(0, label, page_index=page_index, path=path,
                        load=lambda i=page_index: _render_page(document, label, i, dpi))


def _render_page(document, label: str, page_index: int, dpi: float) -> np.ndarray:
    """Page ``page_index`` as a BGR uint8 array (PaddleX: RGB render → BGR)."""
    import pypdfium2 as pdfium

    scale = dpi / 72.0
    with PDFIUM_LOCK:
        try:
            page = document[page_index]
            width, height = page.get_size()
            pixels = width * scale * height * scale
            if pixels > MAX_PAGE_PIXELS:
                raise InputError(f"PDF {label!r} page {page_index}: {width:.0f}x{height:.0f} pt "
                                 f"at {dpi:g} DPI is {pixels / 1e6:.0f} MP; the most is "
                                 f"{MAX_PAGE_PIXELS / 1e6:.0f} MP: lower dpi")
            image = page.render(scale=scale).to_pil().convert("RGB")
        except pdfium.PdfiumError as exc:
            raise InputError(f"PDF {label!r} page {page_index} cannot be rendered: "
                             f"{exc}") from exc
    return np.ascontiguousarray(np.asarray(image)[:, :, ::-1])


def decode_for_drawing(data: Union[bytes, np.ndarray]) -> np.ndarray:
    """An RGB uint8 array of what was sent (bytes decoded with Pillow, BGR arrays flipped), for
    drawing results on; gray images become three channels."""
    if isinstance(data, np.ndarray):
        if data.ndim == 2:
            return np.repeat(data[:, :, None], 3, axis=2)
        if data.shape[2] == 1:
            return np.repeat(data, 3, axis=2)
        return np.ascontiguousarray(data[:, :, 2::-1])
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
