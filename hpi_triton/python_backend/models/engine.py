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
        self.version_dir = os.path.join(args["model_repository"], args["model_version"])
        # Inputs a pipeline's pre-processing sends as uint8 pixels (CHW): float32
        # x * alpha - offset per channel here, the arithmetic of image_io.scale_chw (not
        # imported here: it needs OpenCV, which an engine's environment may lack), applied once per
        # engine call.
        self.scaled_inputs = {
            name: (np.asarray(alpha, np.float32)[:, None, None],
                   np.asarray(offset, np.float32)[:, None, None])
            for name, (alpha, offset) in json.loads(params.pop("uint8_inputs", "{}")).items()
        }
        # Integer label outputs a pipeline takes as uint8 (a segmentation label map: a quarter
        # of the bytes through shared memory, tritonserver and the post-processing model).
        self.narrowed_outputs = set(json.loads(params.pop("uint8_outputs", "[]")))
        # An engine call with more input bytes than this hands the working memory it grew
        # back afterwards (OpenVINO / Paddle / ONNX Runtime keep the peak of every shape run).
        self.release_above = float(params.pop(
            "release_memory_above_mb", stub_runtime.DEFAULT_RELEASE_ABOVE_MB)) * (1 << 20)
        # Above this, releasing is not enough (OpenVINO kept ~350 MB more for later ordinary
        # shapes after a 4000x4000 detection input): the engine is loaded afresh after the
        # call, which measured 0.55 s once against ~10 s for such a request.
        self.reload_above = float(params.pop(
            "reload_engine_above_mb", stub_runtime.DEFAULT_RELOAD_ABOVE_MB)) * (1 << 20)
        self.params = params
        self.runner, self.license = None, None
        if os.path.isfile(os.path.join(self.version_dir, "license.json")):
            # A licensed repository: the artifact is encrypted; it is decrypted in memory
            # once a valid certificate for this device is present (checked again on each
            # request until then), and never written out.
            from ..licensing import license_runtime

            self.license = license_runtime.LicenseCheck(self.version_dir)
            try:
                self._load(self.license.unlock())
            except license_runtime.LicenseError as exc:
                pb_utils.Logger.log_warn(f"{self.model_name}: engine not loaded yet ({exc}); "
                                         f"each request checks the certificate again")
        else:
            self._load(None)

    def _reload(self):
        """A fresh engine in place of this one, whose buffers grew to a huge request."""
        old = self.runner
        try:
            self._load(self.license.unlock() if self.license is not None else None)
        except Exception as exc:  # keep serving with the old engine, its buffers released
            pb_utils.Logger.log_warn(
                f"{self.model_name}: loading the engine afresh after a large request failed "
                f"({type(exc).__name__}: {exc}); serving on with the loaded engine, its "
                f"buffers released")
            self.runner = old
            old.release_memory()
            return
        del old
        stub_runtime.release_heap()

    def _load(self, files):
        self.runner = engines.create_runner(self.version_dir, self.params, files)
        # The engine's own tensor names can differ from the served ones (e.g. after a
        # conversion renamed them); map them by position, as the build verified.
        self.engine_inputs = dict(zip([n for n, _ in self.inputs], self.runner.input_names))
        self.engine_outputs = list(zip([n for n, _ in self.outputs], self.runner.output_names))

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
            if name in self.scaled_inputs:
                channels = self.scaled_inputs[name][0].shape[0]
                if array.ndim < 3 or array.shape[-3] != channels:
                    raise ValueError(f"input '{name}' has shape {list(array.shape)}; expected "
                                     f"[..., {channels}, H, W] uint8 pixels")
            arrays[name] = array
        return arrays

    def _scaled(self, name, array):
        if name not in self.scaled_inputs:
            return array
        alpha, offset = self.scaled_inputs[name]
        out = array.astype(np.float32)
        out *= alpha
        out -= offset
        return out

    def _infer(self, arrays):
        # Batched requests arrive concatenated: uint8 pixels are scaled once, after that.
        feed = {self.engine_inputs[name]: self._scaled(name, value)
                for name, value in arrays.items()}
        size = sum(a.nbytes for a in feed.values())
        if size > self.reload_above:
            result = self.runner.run(feed)
            self._reload()
        elif size > self.release_above:
            result = self.runner.run_and_release(feed)
        else:
            result = self.runner.run(feed)
        return {
            served: self._narrowed(served, np.ascontiguousarray(result[engine_name]), dtype)
            for (served, engine_name), (_, dtype) in zip(self.engine_outputs, self.outputs)
        }

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
        if self.runner is None:  # licensed and still locked
            try:
                self._load(self.license.unlock())
            except Exception as exc:
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
        """Drop the engine runner so its memory can be freed."""
        self.runner = None
