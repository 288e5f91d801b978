"""Which tritonserver runs: ``--tritonserver PATH``, one on PATH, or the one in PyPI's
nvidia-pytriton wheel (its backends prepared outside site-packages, once)."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from hpi_triton.core.cache import default_cache_dir
from hpi_triton.errors import (
    ServerError,
)
from hpi_triton.server.environment import TritonBinary, stub_environment


def _pytriton_server_root() -> Optional[Path]:
    import importlib.util

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


#: A file beside a Python-backend stub that is known to need numpy < 2 (see stub_runtime).
NUMPY1_STUB_MARKER = "hpi_triton_stub_needs_numpy1"


def _prepare_pytriton_backends(root: Path) -> Path:
    """Copy the wheel's Python backend + this Python's stub into the cache (once)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python-backend stub for Python {version} "
                          f"(looked for {stub}); use a Python it ships stubs for, or pass "
                          f"--tritonserver")
    source_dir = root / "backends" / "python"
    target = default_cache_dir() / "tritonserver-backends" / f"py{version}-{_fingerprint(stub)}"
    python_dir = target / "python"
    if not (python_dir / "triton_python_backend_stub").is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".backends-", dir=target.parent))
        shutil.copytree(source_dir, staging / "python",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        for name in ("triton_python_backend_stub", "libtriton_python.so"):
            _make_executable(staging / "python" / name)
        try:
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    # Read by every served model's load check (stub_runtime): this stub needs numpy 1.
    marker = python_dir / NUMPY1_STUB_MARKER
    if not marker.is_file():
        marker.write_text("nvidia-pytriton's stub is built for numpy 1\n")
    return target



def _fingerprint(path: Path) -> str:
    info = path.stat()
    return f"{info.st_size:x}{int(info.st_mtime):x}"


# Python-backend shared memory per stub: images and float32 tensors of several MB cross it per
# request, and the 1 MiB default region grows 1 MiB at a time; starting at 32 MiB and growing
# 16 MiB measured ~10% more img/s for semantic segmentation at 4 clients on 2 cores.
PYTHON_BACKEND_ARGS = ("--backend-config=python,shm-default-byte-size=33554432",
                       "--backend-config=python,shm-growth-byte-size=16777216")


def with_backend_defaults(binary: TritonBinary, args: List[str]) -> List[str]:
    """``args`` plus the backend directory ``binary`` needs and :data:`PYTHON_BACKEND_ARGS`,
    each unless ``args`` already sets it."""
    given = " ".join(args)
    defaults = []
    if binary.backend_dir is not None and "--backend-directory" not in given:
        defaults.append(f"--backend-directory={binary.backend_dir}")
    defaults += [arg for arg in PYTHON_BACKEND_ARGS if arg.split("=")[1] not in given]
    return defaults + list(args)


def find_tritonserver(explicit: Optional[str] = None) -> TritonBinary:
    """Locate a tritonserver: ``explicit``, then PATH, then the nvidia-pytriton wheel."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ServerError(f"--tritonserver {path}: not an executable file")
        return TritonBinary(path, env=stub_environment([]))
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonBinary(Path(on_path), env=stub_environment([]))
    root = _pytriton_server_root()
    if root is None:
        raise ServerError("no tritonserver found: pass --tritonserver PATH, put tritonserver on "
                          "PATH, or pip install nvidia-pytriton (ships a CPU-capable server)")
    executable = root / "bin" / "tritonserver"
    _make_executable(executable)
    backend_dir = _prepare_pytriton_backends(root)
    # The stub's RPATH points into the wheel; once copied, its bundled libs need this path.
    libs = root.parent.parent / "nvidia_pytriton.libs"
    return TritonBinary(executable, backend_dir, stub_environment([libs] if libs.is_dir() else []))
