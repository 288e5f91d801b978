"""The ``file`` of a PaddleX serving request: base64 or URL → bytes → BGR images + dataInfo.

As PaddleX 3.7.2's basic serving (``infra/utils.py``): images are decoded with
``cv2.imdecode(..., IMREAD_COLOR)`` (BGR, EXIF orientation applied), PDF pages rendered with
pypdfium2 at zoom 2.0 (144 DPI) as BGR arrays, and ``dataInfo`` gives the decoded sizes. Unlike
PaddleX, a PDF with more pages than the limit is refused (PaddleX keeps its first 10 pages
silently), and a ``file`` URL is fetched only when its host resolves to public addresses.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import socket
from dataclasses import dataclass
from typing import List, Optional, Tuple
from urllib.parse import urljoin, urlsplit

import numpy as np

from hpi_triton.errors import RequestFieldError, URLRefusedError
from hpi_triton.inputs import DEFAULT_PDF_DPI, PDFIUM_LOCK

#: PaddleX's PDF rendering scale (``PDF_RENDER_SCALE``): 2.0 = 144 DPI.
PDF_RENDER_SCALE = DEFAULT_PDF_DPI / 72
#: Redirects a URL fetch follows, each re-checked.
MAX_REDIRECTS = 5


@dataclass
class FileLimits:
    """What one request's ``file`` may be.

    Attributes:
        max_bytes: Largest decoded file (base64-decoded or fetched), in bytes.
        max_pdf_pages: Most pages of a PDF.
        max_pixels: Most pixels of an image or a rendered page.
        url_inputs: Whether ``file`` may be a URL.
        allow_private_urls: Whether URLs may resolve to loopback / private / link-local
            addresses.
        url_timeout: Seconds a URL fetch may take in all.
    """

    max_bytes: int = 100 * 1024 * 1024
    max_pdf_pages: int = 100
    max_pixels: int = 40_000_000
    url_inputs: bool = True
    allow_private_urls: bool = False
    url_timeout: float = 30.0


def is_url(value: str) -> bool:
    """Whether ``value`` is an http(s) URL (PaddleX's test: scheme and host)."""
    if not value.startswith(("http://", "https://")):
        return False
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


def decode_base64(value: str, limits: FileLimits, field: str = "file") -> bytes:
    """``field`` as base64 → bytes (whitespace, as MIME encoders wrap lines, is ignored).

    Raises:
        RequestFieldError: not base64, empty, or larger than ``limits.max_bytes``.
    """
    compact = "".join(value.split())
    if len(compact) * 3 // 4 > limits.max_bytes:
        raise RequestFieldError(field, f"the file is larger than {limits.max_bytes} bytes "
                                       f"(--max-file-bytes)")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestFieldError(field, f"is neither an http(s) URL nor valid base64 "
                                       f"({exc})") from None
    if not data:
        raise RequestFieldError(field, "is empty")
    return data


def address_refusal(address: str) -> Optional[str]:
    """Why ``address`` may not be fetched from (loopback, private, link-local, ...), or
    None for a public address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if getattr(ip, "ipv4_mapped", None):
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "unspecified", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return f"{ip} is a {kind.replace('_', '-')} address"
    return None


async def _check_host(host: str, port: int, allow_private: bool) -> None:
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port,
                                                             type=socket.SOCK_STREAM)
    except OSError as exc:
        raise URLRefusedError("file", f"the URL's host {host!r} does not resolve "
                                      f"({exc})") from None
    for info in infos:
        reason = address_refusal(info[4][0])
        if reason:
            raise URLRefusedError("file", f"the URL's host {host!r} resolves to {reason}; "
                                          f"the service fetches public addresses only "
                                          f"(--allow-private-urls)")


def _guarded_connector(allow_private: bool):
    """An aiohttp connector whose name resolution refuses non-public addresses, so a host
    that resolves differently at connect time (DNS rebinding) is refused too."""
    import aiohttp
    from aiohttp.resolver import DefaultResolver

    class GuardedResolver(DefaultResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            hosts = await super().resolve(host, port, family)
            if not allow_private:
                for entry in hosts:
                    reason = address_refusal(entry["host"])
                    if reason:
                        raise URLRefusedError("file", f"the URL's host {host!r} resolves to "
                                                      f"{reason} (--allow-private-urls)")
            return hosts

    return aiohttp.TCPConnector(resolver=GuardedResolver(), use_dns_cache=False)


async def fetch_url(url: str, limits: FileLimits) -> bytes:
    """GET ``url`` (redirects followed, each checked), at most ``limits.max_bytes``.

    Raises:
        URLRefusedError: URL inputs are off, a host is not public (unless allowed), the
            fetch failed, timed out, answered an error status or sent too many bytes.
    """
    import aiohttp

    if not limits.url_inputs:
        raise URLRefusedError("file", "URL inputs are turned off on this service "
                                      "(--no-url-inputs); send the file as base64")
    timeout = aiohttp.ClientTimeout(total=limits.url_timeout)
    try:
        async with aiohttp.ClientSession(
                connector=_guarded_connector(limits.allow_private_urls), timeout=timeout,
                cookie_jar=aiohttp.DummyCookieJar()) as session:
            for _ in range(MAX_REDIRECTS + 1):
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise URLRefusedError("file", f"redirected to {url!r}, not an http(s) URL")
                await _check_host(parts.hostname, parts.port or 80,
                                  limits.allow_private_urls)
                async with session.get(url, allow_redirects=False) as response:
                    if response.status in (301, 302, 303, 307, 308) and \
                            "Location" in response.headers:
                        url = urljoin(url, response.headers["Location"])
                        continue
                    if response.status != 200:
                        raise URLRefusedError("file", f"fetching the URL answered HTTP "
                                                      f"{response.status}")
                    return await _read_limited(response, limits.max_bytes)
            raise URLRefusedError("file", f"the URL redirects more than {MAX_REDIRECTS} times")
    except asyncio.TimeoutError:
        raise URLRefusedError("file", f"fetching the URL took more than "
                                      f"{limits.url_timeout:g} s") from None
    except aiohttp.ClientError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, URLRefusedError) else None
        if cause is not None:
            raise cause from None
        raise URLRefusedError("file", f"fetching the URL failed ({exc})") from None


async def _read_limited(response, max_bytes: int) -> bytes:
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise URLRefusedError("file", f"the URL's file is {declared} bytes; the limit is "
                                      f"{max_bytes}")
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise URLRefusedError("file", f"the URL's file is larger than {max_bytes} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise URLRefusedError("file", "the URL's file is empty")
    return data


def file_kind(data: bytes, file_type: Optional[int]) -> str:
    """``"PDF"`` or ``"IMAGE"``: ``fileType`` 0 / 1 as given, detected from the bytes when
    absent."""
    if file_type is None:
        return "PDF" if data[:5] == b"%PDF-" else "IMAGE"
    return "PDF" if file_type == 0 else "IMAGE"


def decode_image(data: bytes, max_pixels: int, field: str = "file") -> np.ndarray:
    """Encoded image bytes → BGR uint8 (``cv2.imdecode`` with ``IMREAD_COLOR``, as PaddleX).

    Raises:
        RequestFieldError: not a decodable image, or above ``max_pixels``.
    """
    import cv2

    size = _header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise RequestFieldError(field, f"the image is {size[0]}x{size[1]} = "
                                       f"{size[0] * size[1]} pixels; the limit is {max_pixels}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        hint = "; for a PDF set fileType 0 or leave it out" if field == "file" else ""
        raise RequestFieldError(field, f"the {len(data)} bytes are not a decodable image "
                                       f"(PNG, JPEG, BMP, TIFF, WebP){hint}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise RequestFieldError(field, f"the image has {image.shape[0] * image.shape[1]} "
                                       f"pixels; the limit is {max_pixels}")
    return image


@dataclass
class EncodedImage:
    """An image file the pipeline graph decodes itself (it does so as PaddleX's
    ``cv2.imdecode(..., IMREAD_COLOR)`` for these files), so this service neither decodes it
    nor sends 3 bytes a pixel to tritonserver.

    Attributes:
        data: The file's bytes.
        width: Width in pixels, from the header.
        height: Height in pixels, from the header.
    """

    data: bytes
    width: int
    height: int

    @property
    def size(self) -> Tuple[int, int]:
        """(width, height), as ``dataInfo`` gives them."""
        return self.width, self.height


#: Pillow's (format, mode) of the files the graph decodes exactly as PaddleX (8-bit PNG and
#: JPEG, grey, colour or with alpha); the rest (16-bit, CMYK, palettes, TIFF pages) are
#: decoded here, as PaddleX does.
_PASS_THROUGH = {("PNG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("JPEG", "L"), ("JPEG", "RGB")}
#: EXIF tag 0x0112: IMREAD_COLOR turns the picture upright; the graph's decoder does not.
_EXIF_ORIENTATION = 0x0112


def prepare_image(data: bytes, max_pixels: int, field: str = "file",
                  need_pixels: bool = False):
    """An :class:`EncodedImage` when the graph can decode ``data`` itself exactly as PaddleX
    and the pixels are not needed here (``need_pixels``: to draw the result), else the
    decoded BGR array (:func:`decode_image`).

    Raises:
        RequestFieldError: not a decodable image, or above ``max_pixels``.
    """
    from PIL import Image

    if not need_pixels:
        try:
            with Image.open(io.BytesIO(data)) as image:
                (width, height), kind = image.size, (image.format, image.mode)
                if image.format == "PNG":
                    # Pillow decodes a whole PNG to look for EXIF after the pixels; a PNG
                    # with an eXIf chunk is rare: decoded here, as PaddleX would.
                    upright = b"eXIf" not in data
                else:
                    upright = image.getexif().get(_EXIF_ORIENTATION, 1) == 1
        except Exception:  # Pillow raises many types; decode_image names the problem
            kind, upright = None, False
        # Pillow calls a 16-bit colour PNG "RGB": the header's bit depth (byte 24) decides.
        eight_bit = kind is not None and (kind[0] != "PNG" or data[24:25] == b"\x08")
        if kind in _PASS_THROUGH and eight_bit and upright and width >= 2 and height >= 2:
            if width * height > max_pixels:
                raise RequestFieldError(field, f"the image is {width}x{height} = "
                                               f"{width * height} pixels; the limit is "
                                               f"{max_pixels}")
            return EncodedImage(data, width, height)
    return decode_image(data, max_pixels, field)


def image_size(image) -> Tuple[int, int]:
    """(width, height) of a decoded array or an :class:`EncodedImage`."""
    if isinstance(image, EncodedImage):
        return image.size
    return image.shape[1], image.shape[0]


def _header_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the image header without decoding, when Pillow reads it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # Pillow raises many types; cv2 then says whether it decodes
        return None


class PDFDocument:
    """An open PDF whose pages render one at a time (pdfium is not thread-safe).

    Raises:
        RequestFieldError: not a PDF pypdfium2 opens, encrypted, empty, or above
            ``limits.max_pdf_pages`` pages.
    """

    def __init__(self, data: bytes, limits: FileLimits):
        import pypdfium2 as pdfium

        self.limits = limits
        try:
            with PDFIUM_LOCK:
                self._document = pdfium.PdfDocument(data)
                self._document.init_forms()
                self.page_count = len(self._document)
        except pdfium.PdfiumError as exc:
            raise RequestFieldError("file", f"is not a readable PDF ({exc}); for an image "
                                            f"set fileType 1 or leave it out") from None
        if self.page_count == 0:
            raise RequestFieldError("file", "the PDF has no pages")
        if self.page_count > limits.max_pdf_pages:
            raise RequestFieldError("file", f"the PDF has {self.page_count} pages; the limit "
                                            f"is {limits.max_pdf_pages} (--max-pdf-pages)")

    def render(self, index: int) -> np.ndarray:
        """Page ``index`` as BGR uint8, at PaddleX's scale.

        Raises:
            RequestFieldError: the page would exceed the pixel limit or cannot be rendered.
        """
        import pypdfium2 as pdfium

        with PDFIUM_LOCK:
            try:
                page = self._document[index]
                try:
                    width, height = page.get_size()
                    pixels = int(np.ceil(width * PDF_RENDER_SCALE)) * int(
                        np.ceil(height * PDF_RENDER_SCALE))
                    if pixels > self.limits.max_pixels:
                        raise RequestFieldError("file", f"PDF page {index + 1} renders to "
                                                        f"{pixels} pixels; the limit is "
                                                        f"{self.limits.max_pixels}")
                    bitmap = page.render(scale=PDF_RENDER_SCALE)
                    image = np.array(bitmap.to_numpy()[:, :, :3])  # pdfium's BGR(x), a copy
                finally:
                    page.close()
            except pdfium.PdfiumError as exc:
                raise RequestFieldError("file", f"PDF page {index + 1} cannot be rendered "
                                                f"({exc})") from None
        return image

    def close(self) -> None:
        """Release the document."""
        with PDFIUM_LOCK:
            self._document.close()


def data_info(kind: str, sizes: List[Tuple[int, int]]) -> dict:
    """PaddleX's ``dataInfo`` for an image or a PDF's pages, from (width, height) sizes."""
    if kind == "IMAGE":
        width, height = sizes[0]
        return {"width": width, "height": height, "type": "image"}
    return {"numPages": len(sizes), "pages": [{"width": w, "height": h} for w, h in sizes],
            "type": "pdf"}
