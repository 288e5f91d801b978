"""Starting a real tritonserver on a repository (``hpi-triton serve``).

The binary is ``--tritonserver PATH``, a ``tritonserver`` on PATH, or the one shipped in PyPI's
``nvidia-pytriton`` wheel. For the wheel's server a backend directory is prepared outside
site-packages (the Python backend plus the stub built for the running Python), and the
environment is set so the stub embeds *this* interpreter: its ``libpython``, its stdlib and
its site-packages, which hold the engine packages the Python-backend models import.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.errors import PortInUseError, ServerError
from hpi_triton.generator.cache import default_cache_dir


@dataclass
class TritonBinary:
    """A tritonserver executable and the backend directory it should use (if any)."""

    executable: Path
    backend_dir: Optional[Path] = None
    env: Optional[Dict[str, str]] = None


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


# glibc malloc settings for tritonserver and its stubs. Every request allocates and frees
# buffers of 0.1-30 MB (encoded and decoded images, float tensors); with glibc's defaults
# these are mmap'ed / trimmed back on every free, so each request pays page faults and
# syscalls (a third of the CPU time was system time in the vision pre-processing model).
# Keeping freed memory below 128 MiB per process cut the pre-processing model's CPU per
# request by ~25% (bench/RESULTS.md). Not applied when the user sets GLIBC_TUNABLES or any
# MALLOC_* variable.
MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20),
                   "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
                   "MALLOC_TOP_PAD_": str(16 << 20)}


def stub_environment(extra_lib_dirs: List[Path]) -> Dict[str, str]:
    """Environment under which the Python-backend stub embeds the running interpreter (and
    :data:`MALLOC_SETTINGS`)."""
    env = dict(os.environ)
    if "GLIBC_TUNABLES" not in env and not any(k.startswith("MALLOC_") for k in env):
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


def _stub_shm_regions(server_pid: int) -> List[str]:
    """Names of the shared-memory regions of the Python-backend stubs in ``server_pid``'s
    process group (each stub gets its region's name on its command line)."""
    regions = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) != server_pid:
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        regions += [a.decode() for a in args
                    if a.startswith(b"triton_python_backend_shm_region_") and b"/" not in a]
    return regions


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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port free on loopback right now (for tests and ``--http-port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOAD_FAILURE = re.compile(r"failed to load '([^']+)'[^:]*: (.*)")


class TritonServer:
    """A tritonserver child process on ``repository``.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. :meth:`start` returns once
    ``/v2/health/ready`` answers 200, and raises :class:`ServerError` naming the models that
    failed to load when the server exits first.

    ``exit_timeout`` (tritonserver's ``--exit-timeout-secs``, default
    :attr:`default_exit_timeout`) is how long a stopping server waits for in-flight requests
    and open HTTP keep-alive connections before it exits anyway.
    """

    #: Triton's own default; test suites lower it (clients they leave open hold a stopping
    #: server for the whole timeout).
    default_exit_timeout = 30

    def __init__(self, repository: Path, http_port: int = 8000, grpc_port: int = 8001,
                 metrics_port: int = 8002, tritonserver: Optional[str] = None,
                 log_path: Optional[Path] = None, extra_args: Optional[List[str]] = None,
                 log_verbose: int = 0, exit_timeout: Optional[int] = None):
        self.exit_timeout = (self.default_exit_timeout if exit_timeout is None
                             else int(exit_timeout))
        self.repository = Path(repository).expanduser().resolve()
        self.ports = {"http": http_port or free_port(), "grpc": grpc_port or free_port(),
                      "metrics": metrics_port or free_port()}
        self.tritonserver = tritonserver
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args or [])
        self.log_verbose = log_verbose
        self.process: Optional[subprocess.Popen] = None
        self._log_file = None

    @property
    def http_url(self) -> str:
        return f"localhost:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        return f"http://localhost:{self.ports['metrics']}/metrics"

    def command(self, binary: TritonBinary) -> List[str]:
        cmd = [str(binary.executable), "--model-repository", str(self.repository),
               "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
               "--metrics-port", str(self.ports["metrics"]), "--log-verbose",
               str(self.log_verbose), "--exit-on-error", "true", "--strict-readiness", "true",
               "--exit-timeout-secs", str(self.exit_timeout)]
        return cmd + with_backend_defaults(binary, self.extra_args)

    def start(self, timeout: float = 300.0) -> TritonServer:
        if not self.repository.is_dir():
            raise ServerError(f"repository {self.repository} is not a directory; build one "
                              f"with 'hpi-triton build'")
        for label, port in self.ports.items():
            if not port_is_free(port):
                raise PortInUseError(f"--{label}-port {port} is taken by another process; "
                                     f"stop it or pass another --{label}-port")
        binary = find_tritonserver(self.tritonserver)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command(binary), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, env=binary.env,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise ServerError(self._failure_message())
            if self.is_ready():
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s; see "
                          f"{self.log_path}")

    def is_ready(self) -> bool:
        url = f"http://localhost:{self.ports['http']}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace") if self.log_path else ""
        except OSError:
            return ""

    def _failure_message(self) -> str:
        text = self.log_text()
        failures = _LOAD_FAILURE.findall(text)
        if failures:
            lines = "\n".join(f"  model '{name}': {why.strip()[:500]}" for name, why in failures)
            return (f"tritonserver exited: models failed to load:\n{lines}\n(full log: "
                    f"{self.log_path})")
        tail = "\n".join(text.strip().splitlines()[-15:])
        return f"tritonserver exited with code {self.process.returncode}:\n{tail}"

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the server as Ctrl-C does; kill it and its stubs if it is still running
        ``timeout`` seconds later (default: its exit timeout + 15 s).

        The signal goes to tritonserver alone: it unloads the models, which stops their
        Python-backend stubs and removes their shared-memory regions. A stopping server
        waits up to its exit timeout for open HTTP keep-alive connections; when it has to be
        killed, its stubs' regions would stay in /dev/shm (32 MiB each), so they are removed
        here."""
        if self.process is not None and self.process.poll() is None:
            regions = _stub_shm_regions(self.process.pid)
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.exit_timeout + 15 if timeout is None
                                  else timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            for region in regions:
                Path("/dev/shm", region).unlink(missing_ok=True)
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C stops it)."""
        assert self.process is not None
        try:
            return self.process.wait()
        except KeyboardInterrupt:
            self.stop()
            return 0

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
