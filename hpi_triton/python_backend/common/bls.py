"""Helpers for the pipeline graph models (BLS) inside tritonserver (stub-side only)."""

import json
import os
import traceback

import cv2
import numpy as np
import triton_python_backend_utils as pb_utils

from . import image_io, parameters, stub_runtime
from .engine import tensor_names

# Every pipeline model runs as several instance processes, which is where its parallelism
# comes from; OpenCV's own thread pool on top of them only adds scheduling overhead (measured:
# ~15% of the vision pre-processing model's CPU per request).
cv2.setNumThreads(1)

# The license gate model this graph calls first (licensed repositories only).
_GATE = None


class LicenseRefused(RuntimeError):
    """The repository is licensed and this machine holds no valid certificate for it."""


class EngineUnavailable(RuntimeError):
    """An engine model this graph calls is not serving right now (its process died and
    ``hpi-triton serve`` is reloading it, or it was unloaded)."""


# Errors that are the request's fault: answered as INVALID_ARG (HTTP 400 / gRPC
# INVALID_ARGUMENT), so proxies and retry policies do not take them for a server fault.
CLIENT_ERRORS = (image_io.ImageError, parameters.ParameterError)

# What Triton answers for a model whose stub died, or that is being reloaded / unloaded.
_UNAVAILABLE_MARKS = ("is not healthy", "is not ready", "unknown model", "is not found",
                      "unavailable")

# The largest image this process decoded since its heap was last trimmed (bytes).
_LARGEST_IMAGE = 0


def graph_settings(args):
    """(settings, version folder) of a graph model: its config's 'pipeline_settings' JSON.
    In a licensed repository this also arms :func:`check_license`."""
    global _GATE
    stub_runtime.check_tensor_round_trip(pb_utils)
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    version_dir = os.path.join(args["model_repository"], args["model_version"])
    license_file = os.path.join(version_dir, "license.json")
    if os.path.isfile(license_file):
        with open(license_file, encoding="utf-8") as handle:
            _GATE = json.load(handle)["gate"]
    return json.loads(params["pipeline_settings"]), version_dir


def check_license():
    """In a licensed repository, ask the gate model; LicenseRefused with its reason."""
    if _GATE is None:
        return
    request = pb_utils.InferenceRequest(
        model_name=_GATE, requested_output_names=["status"],
        inputs=[pb_utils.Tensor("probe", np.zeros(1, np.uint8))])
    response = request.exec()
    if response.has_error():
        raise LicenseRefused(response.error().message())


def read_text(version_dir, file_name):
    """A text file written beside a graph's model.py (a character dict, a tokenizer)."""
    with open(os.path.join(version_dir, file_name), encoding="utf-8") as handle:
        return handle.read()


def read_characters(version_dir, file_name="characters.txt"):
    """A recognition character dict written beside a graph's model.py."""
    return read_text(version_dir, file_name).split("\n")


class EngineCall:
    """A BLS call to one served engine model, as the flows call every engine
    (:class:`~.engine.Engine`): inputs by position in, outputs in order out."""

    def __init__(self, model, input_names, output_names):
        self.model = model
        self.input_names = tensor_names(input_names)
        self.output_names = tensor_names(output_names)

    def run(self, *arrays):
        """Call the engine model on ``arrays`` (in ``input_names`` order); return its outputs.

        Returns:
            The outputs' arrays in ``output_names`` order.

        Raises:
            EngineUnavailable: the model is recovering or not loaded; a retry may succeed.
            RuntimeError: the model answered with any other error.
        """
        request = pb_utils.InferenceRequest(
            model_name=self.model, requested_output_names=self.output_names,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(array))
                    for name, array in zip(self.input_names, arrays)])
        response = request.exec()
        if response.has_error():
            message = response.error().message()
            if any(mark in message.lower() for mark in _UNAVAILABLE_MARKS):
                raise EngineUnavailable(
                    f"model '{self.model}' is recovering (its process stopped; hpi-triton "
                    f"serve reloads it) or not loaded: {message}; retry in a few seconds")
            raise RuntimeError(f"model '{self.model}': {message}")
        return [pb_utils.get_output_tensor_by_name(response, name).as_numpy()
                for name in self.output_names]


def read_image(request, max_pixels):
    """The request's image as BGR HWC uint8 from exactly one of 'image' / 'image_array'."""
    encoded = pb_utils.get_input_tensor_by_name(request, "image")
    decoded = pb_utils.get_input_tensor_by_name(request, "image_array")
    if (encoded is None) == (decoded is None):
        raise image_io.ImageError("send exactly one of 'image' (encoded bytes, UINT8 [-1]) and "
                                  "'image_array' (BGR HxWx3 UINT8)")
    if encoded is not None:
        image = image_io.decode_image(encoded.as_numpy().reshape(-1), max_pixels)
    else:
        image = image_io.normalize_array(decoded.as_numpy(), max_pixels)
    global _LARGEST_IMAGE
    _LARGEST_IMAGE = max(_LARGEST_IMAGE, image.nbytes)
    return image


def serve_each(requests, handle):
    """One response per request: ``handle(request)`` returns it, and an exception becomes
    that request's error alone (see :func:`error_response`). After a batch holding an image
    over :data:`stub_runtime.DEFAULT_RELEASE_ABOVE_MB` the process's free heap goes back to
    the system."""
    global _LARGEST_IMAGE
    responses = []
    for request in requests:
        try:
            responses.append(handle(request))
        except Exception as exc:
            responses.append(error_response(exc))
            log_failure(exc)
    if _LARGEST_IMAGE > stub_runtime.DEFAULT_RELEASE_ABOVE_MB * (1 << 20):
        stub_runtime.release_heap()
    _LARGEST_IMAGE = 0
    return responses


def request_parameters(request):
    """The request's Triton parameters as a dict (empty when none were sent)."""
    return json.loads(request.parameters() or "{}")


def json_response(result, arrays=()):
    """``result`` as the JSON output; entries named in ``arrays`` (numpy) as their own
    outputs instead, so label maps and masks do not travel as JSON lists."""
    tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result.pop(name))) for name in arrays]
    out = np.array([json.dumps(result, ensure_ascii=False).encode("utf-8")], dtype=np.object_)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("result", out)] + tensors)


def error_code(exc):
    """The Triton error code that says whose fault ``exc`` is: the request's (INVALID_ARG),
    nobody's yet (UNAVAILABLE: a licence refusal or an engine being reloaded), or the
    server's (INTERNAL)."""
    if isinstance(exc, CLIENT_ERRORS):
        return pb_utils.TritonError.INVALID_ARG
    if isinstance(exc, (LicenseRefused, EngineUnavailable)):
        return pb_utils.TritonError.UNAVAILABLE
    return pb_utils.TritonError.INTERNAL


def log_failure(exc) -> None:
    """Into Triton's log (pb_utils.Logger): a server fault with its traceback, an engine or
    licence not serving as a warning; a request's own fault is its client's to read."""
    code = error_code(exc)
    if code == pb_utils.TritonError.INTERNAL:
        pb_utils.Logger.log_error(
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())
    elif code == pb_utils.TritonError.UNAVAILABLE:
        pb_utils.Logger.log_warn(f"{type(exc).__name__}: {exc}")


def error_response(exc):
    """``exc`` as this request's error response, with the code :func:`error_code` gives."""
    return pb_utils.InferenceResponse(
        output_tensors=[],
        error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}", error_code(exc)))
