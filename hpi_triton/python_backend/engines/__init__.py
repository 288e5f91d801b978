"""Engine runners shared by the build (verification, measurement) and the served models.

This module ships inside the runtime package of every Python-backend model, so it must
import nothing from the rest of hpi_triton: only numpy and, lazily, the engine package it runs.
What the build verified is therefore exactly the code that serves.

Every runner takes its settings as one flat ``dict[str, str]`` (the same strings Triton puts
in ``config.pbtxt`` ``parameters``) and exposes ``input_names``, ``output_names`` and
``run(inputs) -> dict``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..common.stub_runtime import release_heap


class EngineError(RuntimeError):
    """An engine could not be loaded or run."""


class WrongDeviceError(EngineError):
    """A GPU engine would run somewhere else than asked (typically on the CPU, silently)."""


_MISSING_LIBRARY = re.compile(r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object file")


def missing_library(error: BaseException) -> Optional[str]:
    """The shared library a failed ``dlopen`` names as not found, or None."""
    found = _MISSING_LIBRARY.search(str(error))
    return found.group(1) if found else None


def onnxruntime_build() -> Dict[str, str]:
    """The installed ONNX Runtime's package, version and the CUDA it was built for ('' if none).

    Read from ``onnxruntime/capi/build_and_package_info.py``, which every wheel carries: the
    one fact that says which CUDA major the CUDA provider will look for.
    """
    import onnxruntime as ort

    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:  # very old wheels
        info = None
    return {"package": getattr(info, "package_name", "onnxruntime"),
            "version": ort.__version__, "cuda": getattr(info, "cuda_version", "") or ""}


@functools.cache
def onnxruntime_cuda_problem() -> Optional[str]:
    """Why ONNX Runtime's CUDA provider cannot run in this process, or None when it can load.

    ``get_available_providers()`` lists CUDAExecutionProvider for every onnxruntime-gpu wheel,
    whether or not its CUDA libraries exist; a session then logs the load failure and runs on
    the CPU without raising. So the provider library itself is loaded here (after ONNX
    Runtime's own preloading of pip-installed CUDA libraries), and its failure names the
    missing library.
    """
    import onnxruntime as ort

    build = onnxruntime_build()
    label = f"{build['package']} {build['version']}"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"{label} has no CUDAExecutionProvider (a CPU-only wheel): pip uninstall "
                f"onnxruntime; pip install onnxruntime-gpu")
    cuda = build["cuda"] or "?"
    major = cuda.split(".")[0]
    fix = (f"install CUDA {major} and cuDNN 9 (from PyPI: pip install "
           f"'{build['package']}[cuda,cudnn]=={build['version']}'), run in an image with "
           f"CUDA {major} (deploy/docker/Dockerfile.gpu), or install the onnxruntime-gpu "
           f"built for your CUDA (README 'GPU')")
    _preload_cuda_libraries(ort)
    # Once per process: the answer cannot change, and ONNX Runtime's preloading prints.
    provider = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(provider))
    except OSError as exc:
        missing = missing_library(exc)
        what = f"{missing} not found" if missing else f"its CUDA provider did not load ({exc})"
        return f"{label} needs CUDA {cuda}: {what}; {fix}"
    try:
        ctypes.CDLL("libcudnn.so.9")
    except OSError:
        return f"{label} needs cuDNN 9 for CUDA {major}: libcudnn.so.9 not found; {fix}"
    return None


def _preload_cuda_libraries(ort) -> None:
    """Load CUDA / cuDNN from pip's nvidia-* wheels where ONNX Runtime knows how (>= 1.21);
    without it, libraries installed by pip are not on the loader's path."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - best effort: the provider load below names what fails
        logging.getLogger("hpi_triton.engines").warning(
            "ONNX Runtime could not preload CUDA / cuDNN from pip's nvidia-* wheels (%s: %s); "
            "the CUDA provider load says what is missing", type(exc).__name__, exc)


def _threads(params: Dict[str, str]) -> int:
    value = int(params.get("cpu_threads", "0") or 0)
    return value if value > 0 else (os.cpu_count() or 1)


def instance_core(params: Dict[str, str], instances: int, instance_name: str,
                  cores: List[int]) -> Optional[int]:
    """The core a served single-thread CPU engine instance binds itself to, or None.

    Instance i (the suffix of Triton's ``model_instance_name``, e.g. ``det_0_1``) takes the
    i-th of ``cores`` (the cores the process may use) when the model's ``instances`` divide
    evenly over them; an uneven split would leave some cores doubly loaded while the scheduler
    could not move the bound instances. Measured (2 cores, 2 single-thread OpenVINO
    classification instances, 4 clients, bound and unbound runs alternating on one server):
    +2.5% img/s, as each instance keeps its weights and kernels warm in one core's caches.
    Parameter ``cpu_affinity: none`` opts out; multi-thread instances are never bound.
    """
    affinity = params.pop("cpu_affinity", "spread")
    if affinity not in ("spread", "none"):
        raise EngineError(f"parameter 'cpu_affinity' is {affinity!r}; expected 'spread' "
                          f"(default: single-thread instances one per core) or 'none'")
    if affinity == "none" or params.get("cpu_threads") != "1":
        return None
    index = instance_name.rsplit("_", 1)[-1]
    if instances < 2 or not index.isdigit() or not cores or instances % len(cores):
        return None
    return cores[int(index) % len(cores)]


def _device_id(params: Dict[str, str]) -> int:
    return int(params.get("device_id", "0") or 0)


class Runner:
    """Runs one model; subclasses load one engine."""

    input_names: List[str]
    output_names: List[str]

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the model once; return every output by name.

        Args:
            inputs: One array per name in ``input_names``.
        """
        raise NotImplementedError

    def run_and_release(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """:meth:`run`, then hand the working memory sized for these inputs back (a large
        request's buffers would otherwise stay with the engine for good)."""
        try:
            return self.run(inputs)
        finally:
            self.release_memory()

    def release_memory(self) -> None:
        """Free the engine's intermediate buffers and the process's free heap pages."""
        release_heap()

    def run_list(self, *arrays: np.ndarray) -> List[np.ndarray]:
        """One run with the inputs by position; every output, in order (the graphs' engine
        call form, for in-process references)."""
        outputs = self.run(dict(zip(self.input_names, arrays)))
        return [outputs[name] for name in self.output_names]


class PaddleRunner(Runner):
    """Paddle Inference (CPU with oneDNN, GPU, or Paddle-TensorRT).

    oneDNN is tried first on CPU; some legacy models fail under it (a PIR attribute error seen
    with PP-OCRv4 det), so a predictor that fails to build or to run its first batch is rebuilt
    with oneDNN off instead of failing the model.
    """

    def __init__(self, model_dir: Path, params: Dict[str, str]):
        import paddle.inference as paddle_infer

        self._paddle_infer = paddle_infer
        self._model_file = str(Path(model_dir) / params["model_file"])
        self._params_file = str(Path(model_dir) / params["params_file"])
        self._params = params
        self._device = params.get("device", "cpu")
        onednn_setting = params.get("onednn", "auto")
        self._onednn = onednn_setting != "off" and self._device == "cpu"
        self._onednn_fallback_allowed = onednn_setting == "auto"
        self._predictor = self._build()
        self.input_names = list(self._predictor.get_input_names())
        self.output_names = list(self._predictor.get_output_names())
        self._verified_first_run = False

    def _build(self):
        config = self._paddle_infer.Config(self._model_file, self._params_file)
        config.disable_glog_info()
        if self._device == "gpu":
            config.enable_use_gpu(256, _device_id(self._params))
            if not config.use_gpu():
                # A CPU build logs "Please compile with gpu" and keeps the CPU.
                import paddle

                raise WrongDeviceError(
                    f"Paddle Inference {paddle.__version__} is a CPU build: it cannot run on "
                    f"the GPU (it would silently use the CPU); install a 3.x paddlepaddle-gpu "
                    f"from Paddle's index (PyPI's stops at 2.6), or build for --device cpu")
            if self._params.get("tensorrt") == "on":
                self._enable_tensorrt(config)
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(_threads(self._params))
            if self._onednn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
        try:
            return self._paddle_infer.create_predictor(config)
        except Exception:
            if self._onednn and self._onednn_fallback_allowed:
                self._onednn = False
                return self._build()
            raise

    def _enable_tensorrt(self, config) -> None:
        import json

        precision = {
            "fp32": self._paddle_infer.PrecisionType.Float32,
            "fp16": self._paddle_infer.PrecisionType.Half,
        }[self._params.get("precision", "fp32")]
        config.enable_tensorrt_engine(
            workspace_size=1 << 30,
            max_batch_size=int(self._params.get("max_batch_size", "1") or 1),
            min_subgraph_size=3,
            precision_mode=precision,
            use_static=True,
            use_calib_mode=False,
        )
        shapes = json.loads(self._params.get("trt_dynamic_shapes", "{}") or "{}")
        if shapes:
            config.set_trt_dynamic_shape_info(
                {k: v[0] for k, v in shapes.items()},
                {k: v[2] for k, v in shapes.items()},
                {k: v[1] for k, v in shapes.items()},
            )
        cache_dir = self._params.get("trt_cache_dir")
        if cache_dir:
            config.set_optim_cache_dir(cache_dir)

    def _run_once(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name in self.input_names:
            handle = self._predictor.get_input_handle(name)
            array = np.ascontiguousarray(inputs[name])
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        self._predictor.run()
        return {
            name: self._predictor.get_output_handle(name).copy_to_cpu()
            for name in self.output_names
        }

    def release_memory(self) -> None:
        """Drop the predictor's intermediate tensors, shrink its memory pool to the chunks in
        use, then free the heap."""
        # The intermediate tensors keep their largest size, and their chunks stay in use for
        # try_shrink_memory: measured on PP-OCRv4 det, oneDNN, one 4000 x 1792 input: 1.0 GB
        # -> 8.1 GB, 7.7 GB after shrink alone, 0.47 GB after clear + shrink (1.09 GB after
        # the next small page re-grew them).
        self._predictor.clear_intermediate_tensor()
        self._predictor.try_shrink_memory()
        release_heap()

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the predictor once; return every output by name.

        Until a run has succeeded, a failure with oneDNN on (``onednn: auto``) rebuilds the
        predictor without oneDNN and runs again.
        """
        if self._verified_first_run:
            return self._run_once(inputs)
        try:
            outputs = self._run_once(inputs)
        except Exception:
            if not (self._onednn and self._onednn_fallback_allowed):
                raise
            self._onednn = False
            self._predictor = self._build()
            outputs = self._run_once(inputs)
        self._verified_first_run = True
        return outputs


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime: CPU, or CUDA / TensorRT execution providers on GPU."""

    def __init__(self, model_dir: Path, params: Dict[str, str]):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads(params)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle pool threads would otherwise spin after each run, taking the CPU that the
        # graph's pre/post-processing and the other engine models need.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         params.get("allow_spinning", "0"))
        providers: list = ["CPUExecutionProvider"]
        on_gpu = params.get("device", "cpu") == "gpu"
        if on_gpu:
            problem = onnxruntime_cuda_problem()
            if problem:
                raise WrongDeviceError(problem)
            # TF32 off unless asked for: ONNX Runtime's default (on) let the GPU's fp32
            # results drift to 1e-2 from the CPU reference (H200, PP-OCRv4/v5 det and rec,
            # 2026-12-04); fp32 means fp32 here, as it does for OpenVINO's precision hint.
            providers = [
                ("CUDAExecutionProvider", {"device_id": _device_id(params),
                                           "use_tf32": params.get("cuda_tf32", "0")}),
                "CPUExecutionProvider",
            ]
        files = params.get("_files") or {}
        model = files.get(params["model_file"]) or str(Path(model_dir) / params["model_file"])
        self._session = ort.InferenceSession(model, options, providers=providers)
        self.providers = list(self._session.get_providers())
        if on_gpu and self.providers[:1] != ["CUDAExecutionProvider"]:
            # The provider library loaded but the session still fell back (no device, a
            # driver too old for this CUDA): ONNX Runtime only logged it.
            raise WrongDeviceError(
                f"onnxruntime {ort.__version__}: the session for {params['model_file']} runs "
                f"on {self.providers}, not CUDAExecutionProvider on GPU "
                f"{_device_id(params)}; see the log line before this one for ONNX Runtime's "
                f"reason (a missing GPU, or a driver older than CUDA "
                f"{onnxruntime_build()['cuda']} needs)")
        self.input_names = [i.name for i in self._session.get_inputs()]
        self.output_names = [o.name for o in self._session.get_outputs()]

        self._shrink = ort.RunOptions()
        # The CPU arena keeps the peak of every run; shrinking is asked per run.
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def _run(self, inputs: Dict[str, np.ndarray], options=None) -> Dict[str, np.ndarray]:
        values = self._session.run(self.output_names, {n: inputs[n] for n in self.input_names},
                                   options)
        return dict(zip(self.output_names, values))

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the session once; return every output by name."""
        return self._run(inputs)

    def run_and_release(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run once, asking ONNX Runtime to shrink its CPU arena after it, then free the heap."""
        try:
            return self._run(inputs, self._shrink)
        finally:
            release_heap()


#: Input shapes an OpenVINO CPU engine keeps compiled (parameter ``runtime_cache_capacity``).
DEFAULT_RUNTIME_CACHE_CAPACITY = 64


class OpenVINORunner(Runner):
    """OpenVINO. Precision is pinned: ``f32`` unless the build asked for bf16/fp16.

    On CPUs with AMX OpenVINO's default inference precision is bf16, which would break parity
    with Paddle, so the hint is always set explicitly. ``cpu_pinning`` ("true" / "false")
    sets ENABLE_CPU_PINNING; the served engine model turns it off (several processes share
    the cores there), in-process runs keep OpenVINO's default.
    """

    _PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}

    def __init__(self, model_dir: Path, params: Dict[str, str]):
        import openvino as ov

        core = ov.Core()
        files = params.get("_files") or {}
        if params["model_file"] in files:  # a licensed repository's artifact, decrypted
            weights = files[str(Path(params["model_file"]).with_suffix(".bin"))]
            model = core.read_model(model=files[params["model_file"]].decode("utf-8"),
                                    weights=ov.Tensor(np.frombuffer(weights, np.uint8).copy()))
        else:
            model = core.read_model(str(Path(model_dir) / params["model_file"]))
        device = "GPU" if params.get("device", "cpu") == "gpu" else "CPU"
        if device == "GPU" and not any(d.startswith("GPU") for d in core.available_devices):
            raise WrongDeviceError(
                f"OpenVINO {ov.__version__} sees no GPU device (available: "
                f"{core.available_devices}): its GPU plugin runs on Intel GPUs with their "
                f"OpenCL runtime (intel-opencl-icd); on NVIDIA GPUs use onnx_runtime or tensorrt")
        config = {
            "INFERENCE_PRECISION_HINT": self._PRECISION_HINTS[params.get("precision", "fp32")],
            "PERFORMANCE_HINT": params.get("performance_hint", "LATENCY"),
        }
        if device == "CPU":
            config["INFERENCE_NUM_THREADS"] = str(_threads(params))
            if params.get("cpu_pinning") in ("true", "false"):
                config["ENABLE_CPU_PINNING"] = params["cpu_pinning"] == "true"
            # OpenVINO keeps the kernels and buffers it made for each input shape (5000 by
            # default): OCR pages of ever new sizes grew an engine process by ~1.6 GB over 40
            # pages (bench/RESULTS.md). A bounded cache keeps recurring shapes warm.
            config["CPU_RUNTIME_CACHE_CAPACITY"] = int(params.get(
                "runtime_cache_capacity", DEFAULT_RUNTIME_CACHE_CAPACITY))
        self._compiled = core.compile_model(model, device, config)
        if device == "GPU":
            ran_on = list(self._compiled.get_property("EXECUTION_DEVICES"))
            if not any(d.startswith("GPU") for d in ran_on):
                raise WrongDeviceError(f"OpenVINO compiled {params['model_file']} for {ran_on}, "
                                       f"not the GPU")
        self.input_names = [i.get_any_name() for i in self._compiled.inputs]
        self.output_names = [o.get_any_name() for o in self._compiled.outputs]
        self._request = self._compiled.create_infer_request()

    def release_memory(self) -> None:
        """Release the compiled model's intermediate buffers (OpenVINO >= 2024.3), then the heap."""
        # OpenVINO sizes its intermediate buffers for the largest shape run so far.
        if hasattr(self._compiled, "release_memory"):  # OpenVINO >= 2024.3
            self._compiled.release_memory()
        release_heap()

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the infer request once; return a copy of every output by name."""
        results = self._request.infer({n: inputs[n] for n in self.input_names})
        return {
            name: np.array(results[port], copy=True)
            for name, port in zip(self.output_names, self._compiled.outputs)
        }


class TensorRTRunner(Runner):
    """A serialized TensorRT engine (``model.plan``), run with cuda-python device buffers.

    Only usable where ``tensorrt`` and a CUDA GPU exist; not verified on a CPU-only machine.
    """

    def __init__(self, model_dir: Path, params: Dict[str, str]):
        import tensorrt as trt

        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart

        self._trt = trt
        self._cudart = cudart
        self._check(cudart.cudaSetDevice(_device_id(params)))
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        data = (Path(model_dir) / params["model_file"]).read_bytes()
        self._engine = runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            props = self._check(cudart.cudaGetDeviceProperties(_device_id(params)))[0]
            raise WrongDeviceError(
                f"TensorRT {trt.__version__} could not deserialize {params['model_file']} on "
                f"GPU {_device_id(params)} (compute capability {props.major}.{props.minor}): a "
                f"plan loads only on the GPU architecture and TensorRT version it was built "
                f"with; rebuild the repository on this GPU with this TensorRT")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) != mode]
        self._stream = self._check(cudart.cudaStreamCreate())[0]

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EngineError(f"CUDA call failed: {err}")
        return rest

    def run(self, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the engine once on the GPU; return every output by name.

        Device buffers are allocated per run for the inputs' shapes and freed afterwards.

        Raises:
            EngineError: a CUDA call or the TensorRT execution failed.
        """
        cudart = self._cudart
        kind = cudart.cudaMemcpyKind
        buffers = []
        try:
            for name in self.input_names:
                array = np.ascontiguousarray(inputs[name])
                self._context.set_input_shape(name, array.shape)
                ptr = self._check(cudart.cudaMalloc(array.nbytes))[0]
                buffers.append(ptr)
                self._check(cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes,
                                              kind.cudaMemcpyHostToDevice))
                self._context.set_tensor_address(name, ptr)
            outputs = {}
            for name in self.output_names:
                shape = tuple(self._context.get_tensor_shape(name))
                dtype = self._trt.nptype(self._engine.get_tensor_dtype(name))
                outputs[name] = np.empty(shape, dtype=dtype)
                ptr = self._check(cudart.cudaMalloc(max(outputs[name].nbytes, 1)))[0]
                buffers.append(ptr)
                self._context.set_tensor_address(name, ptr)
            if not self._context.execute_async_v3(self._stream):
                raise EngineError("TensorRT execution failed")
            self._check(cudart.cudaStreamSynchronize(self._stream))
            for name, ptr in zip(self.output_names, buffers[len(self.input_names):]):
                out = outputs[name]
                self._check(cudart.cudaMemcpy(out.ctypes.data, ptr, out.nbytes,
                                              kind.cudaMemcpyDeviceToHost))
            return outputs
        finally:
            for ptr in buffers:
                cudart.cudaFree(ptr)


ENGINES: Dict[str, Callable[[Path, Dict[str, str]], Runner]] = {
    "paddle": PaddleRunner,
    "onnxruntime": OnnxRuntimeRunner,
    "openvino": OpenVINORunner,
    "tensorrt": TensorRTRunner,
}


# Engines that can load an artifact from memory (licensed repositories decrypt in memory).
FROM_MEMORY = ("onnxruntime", "openvino")


def create_runner(model_dir: Path, params: Dict[str, str],
                  files: Optional[Dict[str, bytes]] = None) -> Runner:
    """Load the engine named by ``params['engine']`` on the artifact files in ``model_dir``,
    or on ``files`` (name → bytes, already in memory) when given."""
    engine = params.get("engine", "")
    if engine not in ENGINES:
        raise EngineError(
            f"parameter 'engine' is {engine!r}; expected one of {sorted(ENGINES)}"
        )
    if files is not None:
        if engine not in FROM_MEMORY:
            raise EngineError(f"engine {engine!r} cannot load from memory; licensed "
                              f"repositories use {list(FROM_MEMORY)}")
        params = {**params, "_files": files}
    return ENGINES[engine](Path(model_dir), params)
