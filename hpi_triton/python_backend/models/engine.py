"""Triton Python-backend model that serves one engine artifact (``model.py`` imports it).

Settings come from ``config.pbtxt`` ``parameters`` (engine, model_file, precision, ...); the
engine itself is loaded once in ``initialize``. Inputs named in ``uint8_inputs`` arrive as
uint8 pixels and are scaled here to the engine's float32 (a vision pipeline's
normalisation). Requests of one ``execute`` call whose inputs share their non-batch shapes
are concatenated into one engine call, so Triton's dynamic batcher really batches. A request
that fails gets its own ``TritonError``; the others and the server carry on.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from .. import engines
from ..common import stub_runtime
from ..engines.hosted import EngineLocked, HostedEngine


class TritonPythonModel:
    """Triton's entry point for an engine model: one engine artifact run in-process."""

    def initialize(self, args):
        """Read the parameters, bind a single-thread CPU instance to a core, load the engine.

        In a licensed repository the artifact is decrypted in memory if a valid certificate is
        present; otherwise the engine stays unloaded until a later ``execute`` can unlock it.
        """
        stub_runtime.check_tensor_round_trip(pb_utils)
        config = json.loads(args["model_config"])
        self.model_name = args.get("model_name", config.get("name", "engine"))
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        # Inside tritonserver several processes (engine instances, other engines, pre/post
        # models) share the cores; OpenVINO's default pinning binds each process's threads to
        # the same first cores, so they queue behind each other (measured: 2 detection
        # instances x 1 thread went from 23 to 35 img/s with pinning off).
        params.setdefault("cpu_pinning", "false")
        if args.get("model_instance_kind") == "GPU":
            params["device"] = "gpu"
            params["device_id"] = str(args.get("model_instance_device_id", "0"))
        else:
            # Before the engine starts its threads: they inherit this thread's core.
            core = engines.instance_core(
                params, sum(int(g.get("count", 1)) for g in config.get("instance_group") or [{}]),
                args.get("model_instance_name", ""), sorted(os.sched_getaffinity(0)))
            if core is not None:
                os.sched_setaffinity(0, {core})
        self.batched = config.get("max_batch_size", 0) > 0
        self.inputs = [
            (i["name"], pb_utils.triton_string_to_numpy(i["data_type"])) for i in config["input"]
        ]
        self.outputs = [
            (o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]
        ]
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        # Integer label outputs a pipeline takes as uint8 (a segmentation label map: a quarter
        # of the bytes through shared memory, tritonserver and the post-processing model).
        self.narrowed_outputs = set(json.loads(params.pop("uint8_outputs", "[]")))
        # Loading (decrypted in memory where licensed), uint8 scaling and the memory care
        # after huge inputs are the hosted engine's, as in a graph that runs its engines.
        self.engine = HostedEngine(version_dir, params, [n for n, _ in self.inputs],
                                   [n for n, _ in self.outputs], self.model_name,
                                   pb_utils.Logger.log_warn)

    def _read(self, request):
        arrays = {}
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input '{name}' is missing")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                raise ValueError(
                    f"input '{name}' has dtype {array.dtype}; expected {np.dtype(dtype)}"
                )
            if name in self.engine.scaled_inputs:
                channels = self.engine.scaled_inputs[name][0].shape[0]
                if array.ndim < 3 or array.shape[-3] != channels:
                    raise ValueError(f"input '{name}' has shape {list(array.shape)}; expected "
                                     f"[..., {channels}, H, W] uint8 pixels")
            arrays[name] = array
        return arrays

    def _infer(self, arrays):
        # Batched requests arrive concatenated: uint8 pixels are scaled once, after that.
        result = self.engine.infer(arrays)
        return {name: self._narrowed(name, np.ascontiguousarray(result[name]), dtype)
                for name, dtype in self.outputs}

    def _narrowed(self, name, array, dtype):
        if name in self.narrowed_outputs and array.size:
            low, high = int(array.min()), int(array.max())
            if low < 0 or high > 255:
                raise ValueError(f"output '{name}' holds labels {low}..{high}, which a uint8 "
                                 f"label map cannot hold; rebuild the pipeline with "
                                 f"--param label_dtype=int32")
        return array.astype(dtype, copy=False)

    def _response(self, outputs):
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, outputs[name]) for name, _ in self.outputs]
        )

    @staticmethod
    def _error(exc, code=None):
        """``exc`` as a request's error: ``code`` says whose fault it is (INVALID_ARG for a
        malformed request, UNAVAILABLE while licensed and locked, INTERNAL otherwise)."""
        if code is None:  # the stub defines TritonError's codes only once it runs
            code = pb_utils.TritonError.INTERNAL
        return pb_utils.InferenceResponse(
            output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}", code)
        )

    def execute(self, requests):
        """Answer one batch of requests, one response each, in order.

        A still-locked licensed engine is unlocked first (every request gets UNAVAILABLE if it
        cannot be). Requests whose inputs share their non-batch shapes run as one engine call; a
        malformed or failing request gets its own error.
        """
        try:  # a licensed engine still locked is unlocked first
            self.engine.ensure_loaded()
        except EngineLocked as exc:
            return [self._error(exc, pb_utils.TritonError.UNAVAILABLE) for _ in requests]
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read(request)
            except Exception as exc:  # a malformed request fails alone
                responses[index] = self._error(exc, pb_utils.TritonError.INVALID_ARG)
                continue
            key = tuple((n, a.shape[1:] if self.batched else a.shape) for n, a in arrays.items())
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            if self.batched and len(members) > 1:
                self._execute_batched(members, responses)
            else:
                for index, arrays in members:
                    try:
                        responses[index] = self._response(self._infer(arrays))
                    except Exception as exc:
                        responses[index] = self._error(exc)
        return responses

    def _execute_batched(self, members, responses):
        sizes = [next(iter(arrays.values())).shape[0] for _, arrays in members]
        stacked = {
            name: np.concatenate([arrays[name] for _, arrays in members]) for name, _ in self.inputs
        }
        try:
            outputs = self._infer(stacked)
        except Exception as exc:
            for index, _ in members:
                responses[index] = self._error(exc)
            return
        offsets = np.cumsum([0] + sizes)
        for (index, _), start, stop in zip(members, offsets[:-1], offsets[1:]):
            responses[index] = self._response(
                {name: value[start:stop] for name, value in outputs.items()}
            )

    def finalize(self):
        """Drop the engine so its memory can be freed."""
        self.engine = None
