"""The environment the Python-backend stub runs in: this interpreter's libpython, stdlib and
site-packages, malloc settings; and the check that such a stub can start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.choices import MallocMode
from hpi_triton.errors import (
    ServerError,
    StubEnvironmentError,
)


@dataclass
class TritonBinary:
    """A tritonserver executable and the backend directory it should use (if any)."""

    executable: Path
    backend_dir: Optional[Path] = None
    env: Optional[Dict[str, str]] = None

# glibc malloc settings for tritonserver and its stubs, opt-in (``HPI_TRITON_MALLOC=tuned``,
# ``hpi-triton serve --malloc tuned``). Every request allocates and frees buffers of 0.1-30 MB;
# with glibc's defaults these are mmap'ed / trimmed back on every free, so each request pays
# page faults and syscalls, and keeping freed memory below 128 MiB per process cut the vision
# pre-processing model's CPU per request by ~25% (bench/RESULTS.md). The price is memory:
# every arena of every stub keeps up to the trim threshold, which put the OCR server at
# 1.24 GB PSS after 40 ordinary pages against 1.05 GB with glibc's defaults, so the default
# is glibc's own. Not applied when you set GLIBC_TUNABLES or any MALLOC_* variable.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                   "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
                   "MALLOC_TOP_PAD_": str(16 << 20)}

#: ``default`` (glibc's) or ``tuned`` (:data:`MALLOC_SETTINGS`).
MALLOC_MODES = tuple(m.value for m in MallocMode)


def stub_environment(extra_lib_dirs: List[Path]) -> Dict[str, str]:
    """Environment under which the Python-backend stub embeds the running interpreter (and
    :data:`MALLOC_SETTINGS` when ``HPI_TRITON_MALLOC=tuned``)."""
    env = dict(os.environ)
    mode = env.get("HPI_TRITON_MALLOC", "default")
    if mode not in MALLOC_MODES:
        raise ServerError(f"HPI_TRITON_MALLOC={mode!r}; expected one of {MALLOC_MODES}")
    if mode == "tuned" and "GLIBC_TUNABLES" not in env and \
            not any(k.startswith("MALLOC_") for k in env):
        env.update(MALLOC_SETTINGS)
    lib_dirs = [str(p) for p in extra_lib_dirs]
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        lib_dirs.append(libdir)
    if env.get("LD_LIBRARY_PATH"):
        lib_dirs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_dirs)
    env["PYTHONHOME"] = sys.base_prefix
    # The stub embeds Python in isolated mode: PYTHONPATH/PYTHONHOME are ignored and the
    # prefix is found from the first `python3` on PATH. In a virtual environment that must be
    # the venv's own (its pyvenv.cfg puts the venv's site-packages on sys.path); otherwise the
    # stub imports the base interpreter's packages (another numpy, no engines).
    if sys.prefix != sys.base_prefix:
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    paths = [p for p in sys.path if p and Path(p).is_dir()]
    if env.get("PYTHONPATH"):
        paths.insert(0, env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_STUB_PROBE = """
import json, sys
try:
    import numpy
    found = {"numpy": numpy.__version__, "path": numpy.__file__}
except Exception as exc:
    found = {"numpy": None, "error": repr(exc)}
print(json.dumps(found))
"""


def stub_environment_problems(binary: TritonBinary,
                              python: Optional[str] = None) -> List[str]:
    """What in the environment the Python-backend stub would embed is known to break it; an
    empty list when nothing is.

    The stub embeds this interpreter in isolated mode, so the probe runs ``python -I`` under
    the stub's environment and imports what the stub would import. Known breakers: numpy 2
    for nvidia-pytriton's server (its stub is built for numpy 1: responses came back as empty
    tensors, with no error), no numpy at all, and a ``libpython`` the stub cannot find.
    """
    problems = []
    env = binary.env or dict(os.environ)
    try:
        out = subprocess.run([python or sys.executable, "-I", "-c", _STUB_PROBE], env=env,
                             capture_output=True, text=True, timeout=60)
        found = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return [f"the stub's Python could not be probed ({exc})"]
    version = found.get("numpy")
    if version is None:
        problems.append(f"numpy cannot be imported by the stub ({found.get('error')}); "
                        f"pip install 'numpy<2'")
    elif binary.backend_dir is not None and int(version.split(".")[0]) >= 2:
        # Only the wheel's stub is known to need numpy 1; another tritonserver's stub (the
        # official container's) is checked by the models' own load check.
        problems.append(
            f"numpy {version} ({found['path']}) is first on the stub's path; nvidia-pytriton's "
            f"Python-backend stub is built for numpy 1 and answers every request with empty "
            f"tensors under numpy 2. Fix: pip install 'numpy<2' in this environment (pip "
            f"install -c deploy/constraints.txt numpy), or serve from a venv without numpy 2")
    if binary.backend_dir is not None:
        stub = binary.backend_dir / "python" / "triton_python_backend_stub"
        try:
            ldd = subprocess.run(["ldd", str(stub)], env=env, capture_output=True, text=True,
                                 timeout=30)
            missing = [line.split()[0] for line in ldd.stdout.splitlines()
                       if "not found" in line]
        except (OSError, subprocess.SubprocessError):
            missing = []
        if missing:
            problems.append(f"the Python-backend stub cannot find {missing}: install your "
                            f"Python's shared library (Debian: apt-get install "
                            f"libpython{sys.version_info.major}.{sys.version_info.minor})")
    return problems


def check_stub_environment(binary: TritonBinary, python: Optional[str] = None) -> None:
    """Raise :class:`StubEnvironmentError` naming every known breaker and its fix."""
    problems = stub_environment_problems(binary, python)
    if problems:
        raise StubEnvironmentError("this environment would break tritonserver's Python "
                                   "backend:\n  " + "\n  ".join(problems))
