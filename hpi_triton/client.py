"""Calling a served repository with tritonclient (HTTP or gRPC)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from hpi_triton.choices import Protocol
from hpi_triton.errors import (
    InferError,
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


class Client:
    """A thin client over tritonclient that checks inputs against the model's metadata.

    Args:
        url: ``HOST:PORT`` of the server's HTTP or gRPC endpoint.
        protocol: ``http`` or ``grpc``.
        timeout: Seconds a request may take.
    """

    def __init__(self, url: str, protocol: str = "http", timeout: float = 120.0):
        if protocol not in PROTOCOLS:
            raise InferError(f"--protocol {protocol!r}; expected one of {PROTOCOLS}")
        self.url = url.split("://", 1)[-1]
        self.protocol = protocol
        self.timeout = timeout
        if protocol == "http":
            import tritonclient.http as module

            self._client = module.InferenceServerClient(self.url, network_timeout=timeout,
                                                        connection_timeout=timeout)
        else:
            import tritonclient.grpc as module

            self._client = module.InferenceServerClient(self.url)
        self._module = module
        self._metadata: Dict[str, dict] = {}

    def metadata(self, model: str) -> dict:
        """Return the server's metadata for ``model`` (its inputs and outputs), cached per model.

        Raises:
            InferError: the server cannot be reached or does not hold ``model``.
        """
        if model not in self._metadata:
            try:
                if self.protocol == "http":
                    meta = self._client.get_model_metadata(model)
                else:
                    meta = self._client.get_model_metadata(model, as_json=True)
            except Exception as exc:  # tritonclient raises its own exception types
                raise InferError(f"model {model!r} at {self.url}: {exc}") from exc
            self._metadata[model] = meta
        return self._metadata[model]

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
        declared = {i["name"]: i for i in meta["inputs"]}
        unknown = sorted(set(inputs) - set(declared))
        missing = sorted(set(declared) - set(inputs))
        if unknown or missing:
            raise InferError(f"model {model!r} takes inputs {sorted(declared)}; got unknown "
                             f"{unknown} and missing {missing}")
        request = []
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
            tensor = self._module.InferInput(name, list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            request.append(tensor)
        names = outputs or [o["name"] for o in meta["outputs"]]
        try:
            result = self._client.infer(model, request, outputs=[
                self._module.InferRequestedOutput(n) for n in names])
        except Exception as exc:
            raise server_error(f"model {model!r} at {self.url}", exc) from exc
        return {n: result.as_numpy(n) for n in names}

    def predict(self, pipeline: str, image: Union[str, Path, bytes, np.ndarray],
                **params) -> dict:
        """Run a served pipeline on one image and return its PaddleX-shaped result.

        Args:
            pipeline: The pipeline model's name (e.g. ``"OCR"``).
            image: A file path, encoded bytes (PNG, JPEG, BMP, TIFF, WebP), or a decoded
                uint8 array (BGR HxWx3 like ``cv2.imread``, or HxW gray).
            **params: Per-request pipeline parameters (e.g. ``limit_side_len=960``,
                ``text_rec_score_thresh=0.5``, ``use_textline_orientation=False``).

        Raises:
            InferError: the image cannot be read or sent.
            InvalidRequestError: the server refused the image or a parameter (HTTP 400 /
                gRPC INVALID_ARGUMENT; its message says why; the server keeps serving).
            ServiceUnavailableError: a model of the pipeline is recovering, or the licence
                refuses (HTTP 503 / gRPC UNAVAILABLE).
            ServerFaultError: the server failed (HTTP 500 / gRPC INTERNAL).
        """
        if isinstance(image, (str, Path)):
            try:
                image = Path(image).read_bytes()
            except OSError as exc:
                raise InferError(f"image {str(image)!r} cannot be read: {exc}") from exc
        if isinstance(image, (bytes, bytearray, memoryview)):
            name, array = "image", np.frombuffer(bytes(image), dtype=np.uint8)
        elif isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise InferError(f"image array is {image.dtype} with shape {list(image.shape)}; "
                                 f"expected uint8 HxWx3 (BGR) or HxW")
            name, array = "image_array", image if image.ndim == 3 else image[:, :, None]
        else:
            raise InferError(f"image is a {type(image).__name__}; expected a path, bytes or a "
                             f"uint8 numpy array")
        tensor = self._module.InferInput(name, list(array.shape), "UINT8")
        tensor.set_data_from_numpy(np.ascontiguousarray(array))
        # Parameters travel as strings: gRPC has no float parameter type in every version.
        wire = {k: (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in params.items()}
        names = [o["name"] for o in self.metadata(pipeline)["outputs"]]
        try:
            result = self._client.infer(pipeline, [tensor], parameters=wire or None,
                                        outputs=[self._module.InferRequestedOutput(n)
                                                 for n in names])
        except Exception as exc:
            raise server_error(f"pipeline {pipeline!r} at {self.url}", exc) from exc
        raw = result.as_numpy("result").reshape(-1)[0]
        parsed = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        # Label maps and masks come as their own tensors (numpy arrays here).
        parsed.update({n: result.as_numpy(n) for n in names if n != "result"})
        return parsed

    def inference_statistics(self) -> dict:
        """The server's ``/v2/models/stats`` as JSON (gRPC's mapping writes 64-bit counters
        as strings)."""
        try:
            if self.protocol == "http":
                return self._client.get_inference_statistics()
            return self._client.get_inference_statistics(as_json=True)
        except Exception as exc:
            raise InferError(f"statistics at {self.url}: {exc}") from exc

    def is_model_ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready (``False`` also when the server says no)."""
        try:
            return bool(self._client.is_model_ready(model))
        except Exception as exc:
            raise InferError(f"no Triton server answers at {self.url} ({exc})") from exc

    def close(self) -> None:
        """Close the connection to the server."""
        self._client.close()
