"""Calling a served repository with tritonclient (HTTP or gRPC).

:class:`Client` may be shared by threads: tritonclient's HTTP client belongs to the thread
that made it (geventhttpclient), so each thread gets its own connection, made on its first
call; model metadata is shared. :meth:`Client.predict_many` runs many inputs (paths, folders,
globs, bytes, arrays, PDF pages) with bounded concurrency and yields results in input order.
The asyncio twin is :class:`hpi_triton.aio.AsyncClient`.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Union

import numpy as np

from hpi_triton.choices import Protocol
from hpi_triton.errors import (
    HpiTritonError,
    InferError,
    InputError,
    InvalidRequestError,
    ServerFaultError,
    ServiceUnavailableError,
)
from hpi_triton.triton_models.config import numpy_dtype, triton_dtype

PROTOCOLS = tuple(p.value for p in Protocol)

# HTTP status / gRPC status code → whose fault a refusal is.
_CLIENT_MISTAKE = ("400", "StatusCode.INVALID_ARGUMENT")
_UNAVAILABLE = ("503", "StatusCode.UNAVAILABLE")


def server_error(what: str, exc: Exception) -> InferError:
    """A tritonclient exception as :class:`InvalidRequestError` (the request's fault),
    :class:`ServiceUnavailableError` (retry later) or :class:`ServerFaultError`."""
    status = str(exc.status()) if callable(getattr(exc, "status", None)) else ""
    message = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    if status in ("404", "StatusCode.NOT_FOUND"):  # Triton: a model name it does not hold
        # ... or one that is being reloaded ("has no available versions").
        unloaded = "no available versions" in message
        kind = ServiceUnavailableError if unloaded else InvalidRequestError
    elif "is not healthy" in message:
        # Triton's answer for a model whose stub just died, until hpi-triton serve's
        # supervisor has it unloaded for reloading (under a second): a retry succeeds.
        kind = ServiceUnavailableError
    else:
        kind = (InvalidRequestError if status in _CLIENT_MISTAKE else
                ServiceUnavailableError if status in _UNAVAILABLE else ServerFaultError)
    error = kind(f"{what}: {message}" + (f" [{status}]" if status else ""))
    error.status = status
    return error


def connection_problem(url: str, protocol: str, exc: BaseException) -> Optional[str]:
    """What a failed first contact means for the user, with the fix; None when it is not a
    connection problem (the server answered)."""
    text = str(exc)
    other = "grpc" if protocol == "http" else "http"
    default_port = {"http": 8000, "grpc": 8001}
    if isinstance(exc, ConnectionRefusedError) or "Connection refused" in text or \
            "Connect call failed" in text:  # the last: aiohttp's (AsyncClient over HTTP)
        return (f"no server answers at {url} ({protocol}): connection refused. Is `hpi-triton "
                f"serve` running there? Check --url (defaults: HTTP port "
                f"{default_port['http']}, gRPC port {default_port['grpc']})")
    if "Expected HTTP/" in text or "Failed parsing HTTP/2" in text or "http1.x" in text:
        return (f"the server at {url} does not speak {protocol.upper()}: this looks like its "
                f"{other.upper()} port. Use --protocol {other} (Python: "
                f"Client(url, protocol={other!r})), or the {protocol.upper()} port "
                f"({default_port[protocol]} by default)")
    if "Name or service not known" in text or "DNS resolution failed" in text:
        return f"the host in {url!r} cannot be resolved; check --url (HOST:PORT)"
    return None


def connection_error(url: str, protocol: str, exc: BaseException) -> Optional[InferError]:
    """:func:`connection_problem` as the error to raise (a refused connection may be retried:
    :class:`ServiceUnavailableError`), or None."""
    problem = connection_problem(url, protocol, exc)
    if problem is None:
        return None
    return (ServiceUnavailableError if "connection refused" in problem else InferError)(problem)


def names_an_unknown_model(exc: BaseException) -> bool:
    """Whether Triton refused the model name itself (not a model being reloaded, which
    answers "has no available versions")."""
    status = str(exc.status()) if callable(getattr(exc, "status", None)) else ""
    return status in ("404", "StatusCode.NOT_FOUND") and "no available versions" not in str(exc)


def served_names(index) -> List[str]:
    """Model names of a repository index (HTTP's list, or gRPC's JSON ``{"models": [...]}``)."""
    entries = index.get("models", []) if isinstance(index, dict) else index
    return sorted({entry["name"] for entry in entries})


def same_but_case(model: str, served: List[str]) -> Optional[str]:
    """The one served name equal to ``model`` but for case (build takes pipeline names in any
    case: 'ocr' serves as 'OCR'), or None."""
    same = [name for name in served if name.lower() == model.lower()]
    return same[0] if len(same) == 1 and same[0] != model else None


def unknown_model_error(url: str, model: str, served: Optional[List[str]]) -> InvalidRequestError:
    """The refusal of a model name the server does not hold, listing the ones it does (when
    its index could be read)."""
    if served is None:
        return InvalidRequestError(f"the server at {url} holds no model {model!r}")
    return InvalidRequestError(f"the server at {url} holds no model {model!r}; it serves: "
                               f"{', '.join(served) or 'no models'}")


#: Requests in flight of :meth:`Client.predict_many` unless told otherwise.
DEFAULT_CONCURRENCY = 4

ImageInput = Union[str, Path, bytes, np.ndarray]


def image_tensor(image: ImageInput):
    """(input name, uint8 array) the pipeline graphs take for one image: encoded bytes as
    ``image``, a decoded BGR / gray array as ``image_array``.

    Raises:
        InputError: the image cannot be read, is a PDF (several pages), or is of another type.
    """
    if isinstance(image, (str, Path)):
        if Path(image).suffix.lower() == ".pdf":
            raise InputError(f"image {str(image)!r} is a PDF: use predict_many (one result per "
                             f"page) or hpi-triton infer")
        try:
            image = Path(image).read_bytes()
        except OSError as exc:
            raise InputError(f"image {str(image)!r} cannot be read: {exc}") from exc
    if isinstance(image, (bytes, bytearray, memoryview)):
        return "image", np.frombuffer(bytes(image), dtype=np.uint8)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(f"image array is {image.dtype} with shape {list(image.shape)}; "
                             f"expected uint8 HxWx3 (BGR) or HxW")
        return "image_array", image if image.ndim == 3 else image[:, :, None]
    raise InputError(f"image is a {type(image).__name__}; expected a path, bytes or a uint8 "
                     f"numpy array")


def wire_parameters(params: Dict) -> Dict[str, str]:
    """Per-request parameters as Triton request parameters: strings (gRPC has no float
    parameter type in every version), booleans as ``true`` / ``false``."""
    return {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}


def checked_inputs(model: str, meta: dict, inputs: Dict[str, np.ndarray]):
    """[(name, contiguous array, Triton datatype)] of ``inputs`` checked against ``model``'s
    metadata (names, dtypes, ranks).

    Raises:
        InferError: an input is missing, unknown or of the wrong dtype / rank.
    """
    declared = {i["name"]: i for i in meta["inputs"]}
    unknown = sorted(set(inputs) - set(declared))
    missing = sorted(set(declared) - set(inputs))
    if unknown or missing:
        raise InferError(f"model {model!r} takes inputs {sorted(declared)}; got unknown "
                         f"{unknown} and missing {missing}")
    checked = []
    for name, array in inputs.items():
        spec = declared[name]
        expected = "TYPE_" + spec["datatype"]
        array = np.asarray(array)
        if triton_dtype(array.dtype) != expected:
            raise InferError(f"input {name!r} of model {model!r} is {array.dtype}; expected "
                             f"{numpy_dtype(expected)}")
        if len(array.shape) != len(spec["shape"]):
            raise InferError(f"input {name!r} of model {model!r} has shape "
                             f"{list(array.shape)}; expected rank {len(spec['shape'])} "
                             f"like {spec['shape']} (-1 = any)")
        checked.append((name, np.ascontiguousarray(array), spec["datatype"]))
    return checked


def pipeline_result(result, names: List[str]) -> dict:
    """A pipeline graph's response → PaddleX's result fields (the JSON ``result`` tensor,
    plus label maps, masks and images that travel as their own tensors)."""
    raw = result.as_numpy("result").reshape(-1)[0]
    parsed = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    parsed.update({n: result.as_numpy(n) for n in names if n != "result"})
    return parsed


def naming_input(exc: HpiTritonError, item) -> HpiTritonError:
    """``exc`` as the same error type with the input it belongs to in front (``input 'a.pdf'
    page 2: ...``), unless its message names the input already."""
    where = f"input {item.label!r}" + ("" if item.page_index is None
                                       else f" page {item.page_index}")
    if item.label in str(exc):
        return exc
    named = type(exc)(f"{where}: {exc}")
    named.status = getattr(exc, "status", "")
    named.__cause__ = exc
    return named


def announce(prediction, on_result: Optional[Callable]):
    """``prediction``, after handing it to ``on_result`` (progress bars) when one is given."""
    if on_result is not None:
        on_result(prediction)
    return prediction


def check_protocol(protocol: str) -> str:
    """``protocol`` as given when it is ``http`` or ``grpc``.

    Raises:
        InferError: any other value.
    """
    if protocol not in PROTOCOLS:
        raise InferError(f"--protocol {protocol!r}; expected one of {PROTOCOLS}")
    return str(protocol)


def check_concurrency(concurrency: int) -> int:
    """``concurrency`` when it is a positive int.

    Raises:
        InferError: anything else.
    """
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise InferError(f"concurrency={concurrency!r}; expected a whole number >= 1 "
                         f"(requests in flight)")
    return concurrency


class Client:
    """A client over tritonclient that checks inputs against the model's metadata.

    One instance may be shared by any number of threads (each gets its own connection).

    Args:
        url: ``HOST:PORT`` of the server's HTTP or gRPC endpoint.
        protocol: ``http`` or ``grpc``.
        timeout: Seconds a request may take.
    """

    def __init__(self, url: str, protocol: str = "http", timeout: float = 120.0):
        self.protocol = check_protocol(protocol)
        self.url = url.split("://", 1)[-1]
        self.timeout = timeout
        if self.protocol == "http":
            import tritonclient.http as module
        else:
            import tritonclient.grpc as module
        self._module = module
        self._metadata: Dict[str, dict] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        # Weak: a finished thread's connection goes with its thread-local storage (so the
        # pools of many predict_many calls leave no sockets behind); close() closes the rest.
        self._connections: weakref.WeakSet = weakref.WeakSet()
        self._closed = False
        self._connection()  # the creating thread's, made now: a bad URL fails here

    def _connection(self):
        """This thread's tritonclient client, made on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            if self._closed:
                raise InferError(f"client for {self.url} is closed")
            if self.protocol == "http":
                connection = self._module.InferenceServerClient(
                    self.url, network_timeout=self.timeout, connection_timeout=self.timeout)
            else:
                connection = self._module.InferenceServerClient(self.url)
            self._local.connection = connection
            with self._lock:
                self._connections.add(connection)
        return connection

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def metadata(self, model: str) -> dict:
        """Return the server's metadata for ``model`` (its inputs and outputs), cached per model.

        Raises:
            InferError: the server cannot be reached or does not hold ``model``.
        """
        with self._lock:
            known = self._metadata.get(model)
        if known is not None:
            return known
        try:
            if self.protocol == "http":
                meta = self._connection().get_model_metadata(model)
            else:
                meta = self._connection().get_model_metadata(model, as_json=True)
        except HpiTritonError:
            raise
        except Exception as exc:  # tritonclient raises its own exception types
            meta = self._first_contact_failed(model, exc)
        with self._lock:
            self._metadata[model] = meta
        return meta

    def infer(self, model: str, inputs: Dict[str, np.ndarray],
              outputs: Optional[list] = None) -> Dict[str, np.ndarray]:
        """Run ``model`` on ``inputs`` (name → array); return every output by name.

        Raises:
            InferError: an input is missing, unknown or of the wrong dtype/rank.
            InvalidRequestError: the server refused the request as malformed (HTTP 400 /
                gRPC INVALID_ARGUMENT).
            ServiceUnavailableError: the model is recovering or the licence refuses
                (HTTP 503 / gRPC UNAVAILABLE); a later retry may succeed.
            ServerFaultError: the server failed (HTTP 500 / gRPC INTERNAL).
        """
        meta = self.metadata(model)
        model = meta.get("name", model)
        request = []
        for name, array, datatype in checked_inputs(model, meta, inputs):
            tensor = self._module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            request.append(tensor)
        names = outputs or [o["name"] for o in meta["outputs"]]
        try:
            result = self._connection().infer(model, request, outputs=[
                self._module.InferRequestedOutput(n) for n in names])
        except HpiTritonError:
            raise
        except Exception as exc:
            raise server_error(f"model {model!r} at {self.url}", exc) from exc
        return {n: result.as_numpy(n) for n in names}

    def predict(self, pipeline: str, image: ImageInput, **params) -> dict:
        """Run a served pipeline on one image and return its PaddleX-shaped result.

        Args:
            pipeline: The pipeline model's name (e.g. ``"OCR"``).
            image: A file path, encoded bytes (PNG, JPEG, BMP, TIFF, WebP), or a decoded
                uint8 array (BGR HxWx3 like ``cv2.imread``, or HxW gray).
            **params: Per-request pipeline parameters (e.g. ``limit_side_len=960``,
                ``text_rec_score_thresh=0.5``, ``use_textline_orientation=False``).

        Raises:
            InputError: the image cannot be read, or is a PDF (use :meth:`predict_many`).
            InvalidRequestError: the server refused the image or a parameter (HTTP 400 /
                gRPC INVALID_ARGUMENT; its message says why; the server keeps serving).
            ServiceUnavailableError: a model of the pipeline is recovering, or the licence
                refuses (HTTP 503 / gRPC UNAVAILABLE).
            ServerFaultError: the server failed (HTTP 500 / gRPC INTERNAL).
        """
        name, array = image_tensor(image)
        tensor = self._module.InferInput(name, list(array.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        wire = wire_parameters(params)
        meta = self.metadata(pipeline)
        names = [o["name"] for o in meta["outputs"]]
        pipeline = meta.get("name", pipeline)
        try:
            result = self._connection().infer(pipeline, [tensor], parameters=wire or None,
                                              outputs=[self._module.InferRequestedOutput(n)
                                                       for n in names])
        except HpiTritonError:
            raise
        except Exception as exc:
            raise server_error(f"pipeline {pipeline!r} at {self.url}", exc) from exc
        return pipeline_result(result, names)

    def predict_many(self, pipeline: str, inputs, *, concurrency: int = DEFAULT_CONCURRENCY,
                     dpi: int = 144, pdf_password: Optional[str] = None,
                     on_result: Optional[Callable] = None, **params) -> Iterator:
        """Run a served pipeline on many inputs; yield one :class:`~hpi_triton.results.
        Prediction` per image or PDF page, in input order.

        Args:
            pipeline: The pipeline model's name.
            inputs: A path, directory, glob, bytes, array or PDF, or an iterable of them
                (see :func:`hpi_triton.inputs.expand`).
            concurrency: Requests in flight at once (the server's throughput needs about as
                many as it has engine instances busy; 4 suits a 2–8 core CPU server).
            dpi: Resolution PDF pages are rendered at (PaddleX's: 144).
            pdf_password: Password of encrypted PDFs.
            on_result: Called with each :class:`Prediction` as it is yielded (progress bars).
            **params: Per-request pipeline parameters, as :meth:`predict`.

        An input that fails (unreadable, refused by the server) yields a Prediction with its
        ``error``; the others go on. Only a mistake in the call itself raises.

        Raises:
            InferError: ``concurrency`` or ``dpi`` is invalid, or ``inputs`` holds an object of
                another type.
        """
        from hpi_triton.inputs import expand

        check_concurrency(concurrency)
        items = expand(inputs, dpi=dpi, password=pdf_password)
        return self._run_many(pipeline, items, concurrency, on_result, params)

    def _run_many(self, pipeline: str, items, concurrency: int, on_result, params) -> Iterator:
        from hpi_triton.results import Prediction

        def run(item) -> Prediction:
            prediction = Prediction(item.index, item.label, item.page_index, pipeline,
                                    item=item)
            try:
                if item.error is not None:
                    raise item.error
                prediction.result = self.predict(pipeline, item.load(), **params)
            except HpiTritonError as exc:
                prediction.error = naming_input(exc, item)
            return prediction

        with ThreadPoolExecutor(max_workers=concurrency,
                                thread_name_prefix="hpi-triton-predict") as pool:
            pending: deque = deque()
            queue = iter(items)
            try:
                # A window of twice the concurrency: the pool never idles, and a long folder
                # is never read into memory at once.
                for item in queue:
                    pending.append(pool.submit(run, item))
                    if len(pending) >= 2 * concurrency:
                        yield announce(pending.popleft().result(), on_result)
                while pending:
                    yield announce(pending.popleft().result(), on_result)
            finally:
                for future in pending:  # the caller stopped early: drop what is queued
                    future.cancel()

    def served_models(self) -> List[str]:
        """The names of the models the server's repository holds (ready or not)."""
        try:
            if self.protocol == "http":
                return served_names(self._connection().get_model_repository_index())
            return served_names(self._connection().get_model_repository_index(as_json=True))
        except Exception as exc:  # noqa: BLE001 - tritonclient's own exception types
            raise InferError(f"model repository index at {self.url}: {exc}") from exc

    def _first_contact_failed(self, model: str, exc: Exception) -> dict:
        """A failed metadata request: a connection problem named with its fix, an unknown
        model with the served names, and a name that differs from a served one only in case
        resolved to it (its metadata returned)."""
        error = connection_error(self.url, self.protocol, exc)
        if error is not None:
            raise error from exc
        if not names_an_unknown_model(exc):
            raise InferError(f"model {model!r} at {self.url}: {exc}") from exc
        try:
            served = self.served_models()
        except InferError:
            served = None
        match = same_but_case(model, served or [])
        if match is None:
            raise unknown_model_error(self.url, model, served) from exc
        return self.metadata(match)

    def inference_statistics(self) -> dict:
        """The server's ``/v2/models/stats`` as JSON (gRPC's mapping writes 64-bit counters
        as strings)."""
        try:
            if self.protocol == "http":
                return self._connection().get_inference_statistics()
            return self._connection().get_inference_statistics(as_json=True)
        except HpiTritonError:
            raise
        except Exception as exc:
            raise InferError(f"statistics at {self.url}: {exc}") from exc

    def is_model_ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready (``False`` also when the server says no)."""
        try:
            return bool(self._connection().is_model_ready(model))
        except HpiTritonError:
            raise
        except Exception as exc:
            problem = connection_problem(self.url, self.protocol, exc)
            raise InferError(problem or f"no Triton server answers at {self.url} ({exc})") \
                from exc

    def close(self) -> None:
        """Close every thread's connection to the server; later calls raise InferError."""
        with self._lock:
            self._closed = True
            connections, self._connections = list(self._connections), weakref.WeakSet()
        self._local = threading.local()
        for connection in connections:
            try:
                connection.close()
            except Exception:  # another thread's gevent hub: its sockets close with it
                pass
