"""``hpi-triton doctor``: what this machine can run, and what to install for the rest.

It answers the questions the deployment guide's install table answers per architecture, for the
machine it runs on: CPU features that change engine speed or numerics (AVX-512, AMX), the NVIDIA
GPU and its driver, the CUDA runtime / cuDNN / TensorRT libraries found, which of the five
backends build here (and why not), and which tritonserver ``hpi-triton serve`` would start with
which Triton backends. Everything is read, nothing is installed or started.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import platform
import shutil
import site
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.core.cache import package_versions
from hpi_triton.generator.requirements import installed_version

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "avx_vnni")
NATIVE_TRITON_BACKENDS = {"onnx_runtime": "onnxruntime", "openvino": "openvino",
                          "tensorrt": "tensorrt"}
GPU_IMAGE_HINT = ("the official image: docker build -f deploy/docker/Dockerfile.gpu (FROM "
                  "nvcr.io/nvidia/tritonserver:<yy.mm>-py3), see README 'Deploy'")


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """Model name, logical cores and the instruction-set flags engines care about."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and value.strip():
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    features = {flag: flag in flags for flag in CPU_FLAGS}
    notes = []
    if features["amx_bf16"] or features["avx512_bf16"]:
        notes.append("bf16 in hardware: OpenVINO's default precision here is bf16, so builds "
                     "pin f32 (--precision fp32) to equal Paddle; --precision bf16 trades "
                     "exactness for speed, and --fast's accuracy gate measures bf16 "
                     "candidates")
    if not features["avx2"]:
        notes.append("no AVX2: Paddle Inference and OpenVINO wheels need it; ONNX Runtime runs")
    return {"model": model, "machine": platform.machine(), "logical_cores": os.cpu_count(),
            "flags": features, "notes": notes}


def _run(cmd: List[str], timeout: float = 20.0) -> Optional[str]:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpu_info() -> dict:
    """NVIDIA GPUs from ``nvidia-smi``: name, memory, compute capability, driver, CUDA."""
    listing = _run(["nvidia-smi", "--query-gpu=index,name,memory.total,compute_cap,"
                    "driver_version", "--format=csv,noheader,nounits"])
    if listing is None:
        why = ("nvidia-smi not found: no NVIDIA driver on this machine"
               if shutil.which("nvidia-smi") is None else "nvidia-smi failed")
        return {"gpus": [], "driver": None, "cuda_driver": None, "why_none": why}
    gpus, driver = [], None
    for line in listing.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5:
            continue
        index, name, memory, capability, driver = parts[:5]
        gpus.append({"index": int(index), "name": name, "memory_mib": int(float(memory)),
                     "compute_capability": capability})
    return {"gpus": gpus, "driver": driver, "cuda_driver": _cuda_driver_version(),
            "why_none": None if gpus else "nvidia-smi lists no GPU"}


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{(number % 1000) // 10}"


def _cuda_driver_version() -> Optional[str]:
    """The CUDA version the driver supports (``cuDriverGetVersion``)."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None
    return _cuda_version(version.value)


def _library_dirs() -> List[str]:
    """Where CUDA libraries live: pip's nvidia-* wheels, CUDA_HOME, the loader's cache."""
    roots = [*site.getsitepackages(), site.getusersitepackages(),
             *[p for p in sys.path if p.endswith("site-packages")]]
    dirs = []
    for root in dict.fromkeys(roots):
        dirs += glob.glob(os.path.join(root, "nvidia", "*", "lib"))
        dirs += glob.glob(os.path.join(root, "tensorrt_libs"))
    for home in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            dirs.append(os.path.join(home, "lib64"))
    dirs += [d for d in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if d]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"]
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


@cache
def _loader_cache() -> str:
    return _run(["ldconfig", "-p"]) or ""


def _library_copies(stem: str) -> List[str]:
    """Every distinct ``lib<stem>.so.N`` in the library dirs and the loader's cache."""
    found = []
    for directory in _library_dirs():
        found += glob.glob(os.path.join(directory, f"lib{stem}.so.*"))
    found += [line.split("=>")[-1].strip() for line in _loader_cache().splitlines()
              if f"lib{stem}.so." in line and "=>" in line]
    copies: Dict[str, str] = {}
    for path in sorted(found, key=len):
        if os.path.isfile(path):
            copies.setdefault(os.path.realpath(path), path)
    return sorted(copies.values())


# Each library is loaded in a child process: two copies with one soname cannot both be read
# in one process (the second dlopen returns the first), and the doctor's own process stays
# free of CUDA libraries.
_PROBES = {
    "cudart": "v=ctypes.c_int(0); lib.cudaRuntimeGetVersion(ctypes.byref(v)); print(v.value)",
    "cudnn": "f=lib.cudnnGetVersion; f.restype=ctypes.c_size_t; print(f())",
}


def _probe(stem: str, target: str) -> Optional[int]:
    code = f"import ctypes; lib=ctypes.CDLL({target!r}); {_PROBES[stem]}"
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else None


def _cudnn_version(value: int) -> str:
    # cuDNN 9 encodes major*10000 + minor*100 + patch; 8 and older major*1000 + minor*100 + ...
    major, rest = (value // 10000, value % 10000) if value >= 90000 else \
        (value // 1000, value % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _library_entry(stem: str, paths: List[str], soname: str, decode, missing: str) -> dict:
    """The copy the loader picks for ``soname`` (its version) and every copy in ``paths``."""
    copies = [{"path": path, "version": decode(v) if (v := _probe(stem, path)) else None}
              for path in paths]
    loaded = _probe(stem, soname)
    if loaded is None and not copies:
        return {"version": None, "why": missing, "copies": []}
    return {"version": decode(loaded) if loaded else None,
            "loader_picks": soname if loaded else None, "copies": copies,
            **({} if loaded else {"why": f"{soname} is not on the loader's path (add its "
                                         f"folder to LD_LIBRARY_PATH)"})}


def cuda_libraries() -> Dict[str, dict]:
    """CUDA runtime, cuDNN and TensorRT: the version the dynamic loader would give an engine,
    every copy found (with its version), or why none is there."""
    out: Dict[str, dict] = {}
    runtimes = _library_copies("cudart")
    major = sorted({p.split(".so.")[-1].split(".")[0] for p in runtimes},
                   key=lambda text: int(text) if text.isdigit() else 0)
    out["cuda_runtime"] = _library_entry(
        "cudart", runtimes, f"libcudart.so.{major[-1]}" if major else "libcudart.so",
        _cuda_version,
        "libcudart not found (pip install nvidia-cuda-runtime-cu12, or the CUDA toolkit)")
    out["cudnn"] = _library_entry(
        "cudnn", _library_copies("cudnn"), "libcudnn.so.9", _cudnn_version,
        "libcudnn not found (pip install nvidia-cudnn-cu12, or cuDNN from NVIDIA)")
    tensorrt = installed_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13",
                                     "tensorrt-cu12-libs", "tensorrt-cu13-libs")
    if tensorrt:
        out["tensorrt"] = {"version": tensorrt[1], "package": tensorrt[0]}
    else:
        copies = _library_copies("nvinfer")
        out["tensorrt"] = ({"version": copies[-1].split(".so.")[-1], "path": copies[-1]}
                           if copies else
                           {"version": None, "why": "no tensorrt package or libnvinfer (pip "
                            "install tensorrt, on a machine with an NVIDIA GPU)"})
    return out


def backend_status() -> List[dict]:
    """Each of the five backends on cpu and gpu: usable, or why not and what to install."""
    from hpi_triton.triton_models.backends import Device, backend_classes, registry

    rows = []
    for backend_class in backend_classes():
        row = {"name": backend_class.name, "aliases": list(backend_class.aliases),
               "installed": backend_class.installed(),
               "packages": package_versions(backend_class.packages),
               "install": backend_class.install_hint,
               "native_triton_backend": NATIVE_TRITON_BACKENDS.get(backend_class.name)}
        for kind in ("cpu", "gpu"):
            if not row["installed"]:
                reason = f"not installed: {backend_class.install_hint}"
            else:
                reason = registry.get(backend_class.name).unavailable_reason(
                    Device(kind), "fp32")
            row[kind] = {"usable": reason is None, "why_not": reason}
        rows.append(row)
    return rows


# Run in a child process: loading an engine's CUDA provider pulls CUDA libraries into the
# process, which the doctor's own process keeps free of.
_GPU_ENGINE_PROBE = """
import json
from hpi_triton.python_backend.engines import onnxruntime_build, onnxruntime_cuda_problem
build = onnxruntime_build()
print(json.dumps({**build, "problem": onnxruntime_cuda_problem()}))
"""


def gpu_engines() -> Dict[str, dict]:
    """Whether each installed GPU engine can really load its GPU code here, and if not, why.

    Asked even without a GPU: an onnxruntime-gpu whose CUDA libraries are missing would
    otherwise only show on the GPU machine, as a session running on the CPU.
    """
    out: Dict[str, dict] = {}
    if installed_version("onnxruntime-gpu"):
        try:
            done = subprocess.run([sys.executable, "-c", _GPU_ENGINE_PROBE],
                                  capture_output=True, text=True, timeout=120)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            out["onnx_runtime"] = (json.loads(lines[-1]) if done.returncode == 0 and lines else
                                   {"problem": f"the probe failed: {done.stderr.strip()[-300:]}"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            out["onnx_runtime"] = {"problem": f"the probe failed: {exc}"}
    return out


def triton_server() -> dict:
    """The tritonserver ``hpi-triton serve`` would start, and its Triton backends."""
    from hpi_triton.errors import ServerError
    from hpi_triton.server import find_tritonserver, stub_environment_problems

    try:
        binary = find_tritonserver()
    except ServerError as exc:
        return {"executable": None, "why": str(exc), "backends": []}
    backend_dir = binary.backend_dir
    source = "nvidia-pytriton wheel" if backend_dir is not None else "PATH"
    if backend_dir is None:
        # The official image keeps them beside the binary (/opt/tritonserver/backends).
        backend_dir = Path(binary.executable).resolve().parent.parent / "backends"
    backends = sorted(p.name for p in Path(backend_dir).iterdir() if p.is_dir()) \
        if Path(backend_dir).is_dir() else []
    version = os.environ.get("TRITON_SERVER_VERSION")
    if version is None and source == "nvidia-pytriton wheel":
        pytriton = installed_version("nvidia-pytriton")
        version = f"as shipped in nvidia-pytriton {pytriton[1]}" if pytriton else None
    return {"executable": str(binary.executable), "source": source, "version": version,
            "container": os.environ.get("NVIDIA_TRITON_SERVER_VERSION"),
            "backend_directory": str(backend_dir), "backends": backends,
            # What 'serve' refuses: an environment the Python-backend stub would break in.
            "stub_environment_problems": stub_environment_problems(binary)}


def advice(report: dict) -> List[str]:
    """What to install or use to enable what is missing, one line each."""
    lines = []
    gpus = report["gpu"]["gpus"]
    for row in report["backends"]:
        if not row["installed"]:
            where = "gpu" if row["name"] in ("tensorrt", "paddle_tensorrt") else "cpu"
            if where == "gpu" and not gpus:
                lines.append(f"{row['name']}: needs an NVIDIA GPU; on a GPU machine: "
                             f"{row['install']}")
            else:
                lines.append(f"{row['name']}: {row['install']}")
    server = report["tritonserver"]
    if server["executable"] is None:
        lines.append("tritonserver: pip install 'hpi-triton[cpu]' (nvidia-pytriton ships a "
                     "CPU-capable server), or use " + GPU_IMAGE_HINT)
    else:
        lines += [f"serve refuses this environment: {problem}"
                  for problem in server.get("stub_environment_problems", [])]
        missing = [b for b in NATIVE_TRITON_BACKENDS.values() if b not in server["backends"]]
        if missing:
            lines.append(f"this tritonserver has no {', '.join(missing)} Triton backend: build "
                         f"with --hosting auto, graph or python (engines inside Python-backend "
                         f"models or graphs; auto is the default), or serve --hosting native "
                         f"repositories from " + GPU_IMAGE_HINT)
    for name, entry in report["cuda"].items():
        versions = {c["version"] for c in entry.get("copies", []) if c["version"]}
        if len(versions) > 1:
            where = "; ".join(f"{c['version']} at {c['path']}" for c in entry["copies"])
            lines.append(f"{name}: {len(versions)} versions installed ({where}); an engine "
                         f"that bundles its own may meet another one already loaded in the "
                         f"process: keep one, or order LD_LIBRARY_PATH deliberately")
    for name, entry in report.get("gpu_engines", {}).items():
        if entry.get("problem"):
            lines.append(f"{name} on gpu: {entry['problem']}")
    if gpus and report["cuda"]["cudnn"]["version"] is None:
        lines.append("cuDNN: pip install nvidia-cudnn-cu12 (ONNX Runtime's and Paddle's CUDA "
                     "providers load it)")
    return lines


def diagnose() -> dict:
    """Everything ``hpi-triton doctor`` reports, as a dict (``--json`` prints it)."""
    report = {"python": sys.version.split()[0], "platform": platform.platform(),
              "cpu": cpu_info(), "gpu": gpu_info(), "cuda": cuda_libraries(),
              "backends": backend_status(), "gpu_engines": gpu_engines(),
              "tritonserver": triton_server()}
    report["advice"] = advice(report)
    return report


def render(report: dict) -> None:
    """Print ``report`` as tables."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    cpu = report["cpu"]
    flags = ", ".join(f"{k}" for k, v in cpu["flags"].items() if v) or "none of " + \
        ", ".join(CPU_FLAGS)
    console.print(f"[bold]CPU[/bold]  {cpu['model']} ({cpu['machine']}, {cpu['logical_cores']} "
                  f"logical cores); flags: {flags}")
    for note in cpu["notes"]:
        console.print(f"     {note}")
    gpu = report["gpu"]
    if gpu["gpus"]:
        for g in gpu["gpus"]:
            console.print(f"[bold]GPU {g['index']}[/bold] {g['name']}, {g['memory_mib']} MiB, "
                          f"compute capability {g['compute_capability']}")
        console.print(f"     driver {gpu['driver']}, CUDA (driver API) {gpu['cuda_driver']}")
    else:
        console.print(f"[bold]GPU[/bold]  none: {gpu['why_none']}")
    for name, entry in report["cuda"].items():
        text = entry["version"] or f"not loadable: {entry.get('why')}"
        origin = entry.get("path") or entry.get("package") or entry.get("loader_picks") or ""
        console.print(f"[bold]{name}[/bold] {text} {origin}")
        for copy in entry.get("copies", []):
            console.print(f"     found {copy['version'] or '?'} at {copy['path']}")
    for name, entry in report.get("gpu_engines", {}).items():
        state = (f"[bold red]cannot run on the GPU[/bold red]: {escape(entry['problem'])}"
                 if entry.get("problem") else "[green]CUDA provider loads[/green]")
        console.print(f"[bold]{name} GPU engine[/bold] {entry.get('package', '')} "
                      f"{entry.get('version', '')} (CUDA {entry.get('cuda') or '?'}): {state}")
    table = Table(title="Backends (fp32)")
    for column in ("backend", "cpu", "gpu", "packages"):
        table.add_column(column)
    for row in report["backends"]:
        cells = []
        for kind in ("cpu", "gpu"):
            entry = row[kind]
            cells.append("[green]usable[/green]" if entry["usable"] else escape(entry["why_not"]))
        packages = ", ".join(f"{k} {v}" for k, v in row["packages"].items() if v) or "-"
        table.add_row(row["name"], *cells, packages)
    console.print(table)
    server = report["tritonserver"]
    if server["executable"]:
        console.print(f"[bold]tritonserver[/bold] {server['executable']} ({server['source']}"
                      f"{', ' + server['version'] if server['version'] else ''}); Triton "
                      f"backends: {', '.join(server['backends']) or 'none'}")
        for problem in server.get("stub_environment_problems", []):
            console.print(f"[bold red]serve refuses this environment[/bold red]: {problem}")
    else:
        console.print(f"[bold]tritonserver[/bold] not found: {server['why']}")
    if report["advice"]:
        console.print("[bold]To enable the rest[/bold]")
        for line in report["advice"]:
            console.print(f"  - {escape(line)}")
