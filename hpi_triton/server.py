"""Starting a real tritonserver on a repository (``hpi-triton serve``).

The binary is ``--tritonserver PATH``, a ``tritonserver`` on PATH, or the one shipped in PyPI's
``nvidia-pytriton`` wheel. For the wheel's server a backend directory is prepared outside
site-packages (the Python backend plus the stub built for the running Python), and the
environment is set so the stub embeds *this* interpreter: its ``libpython``, its stdlib and
its site-packages, which hold the engine packages the Python-backend models import.
"""

from __future__ import annotations

import ctypes
import json
import logging
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
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from hpi_triton.choices import MallocMode
from hpi_triton.core.cache import default_cache_dir
from hpi_triton.errors import (
    PortInUseError,
    ServerError,
    StubEnvironmentError,
)


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


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` can be bound on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def repository_problem(repository) -> Optional[str]:
    """Why a local folder cannot be served (not a model repository), or None; remote
    repositories (s3://, gs://, as://) are left to tritonserver."""
    if "://" in str(repository):
        return None
    path = Path(repository)
    fix = ("serve the folder 'hpi-triton build --out' wrote, e.g. hpi-triton build --pipeline "
           "OCR --model TextDetection=DET_DIR --model TextRecognition=REC_DIR --out repo; "
           "hpi-triton serve repo")
    if not path.is_dir():
        return f"repository {str(path)!r} is not a folder: {fix}"
    if any(child.is_dir() and (child / "config.pbtxt").is_file() for child in path.iterdir()):
        return None
    if (path / "inference.yml").is_file() or (path / "config.pbtxt").is_file():
        what = ("a PaddleX model dir (inference.yml), not a model repository"
                if (path / "inference.yml").is_file() else
                "one model's folder (config.pbtxt), not the repository above it")
        return f"repository {str(path)!r} is {what}: {fix}"
    return f"repository {str(path)!r} holds no model (no sub-folder with a config.pbtxt): {fix}"


def check_ports_free(ports: Dict[str, int]) -> None:
    """Refuse ports another process holds (label → port, the label naming its option).

    Raises:
        PortInUseError: one of ``ports`` is taken.
    """
    for label, port in ports.items():
        if not port_is_free(port):
            raise PortInUseError(f"--{label}-port {port} is taken by another process; "
                                 f"stop it or pass another --{label}-port")


def free_port() -> int:
    """A TCP port free on loopback right now (for tests and ``--http-port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOAD_FAILURE = re.compile(r"failed to load '([^']+)'[^:]*: (.*)")

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _bind_to_parent(parent_pid: int) -> None:
    """In the forked child, before exec: signals back to their defaults (a background job's
    SIGINT arrives ignored, and an ignored signal stays ignored across exec), and SIGTERM to
    the child when the parent dies, ``kill -9`` included, so tritonserver never outlives the
    process that started it; it then stops as on ``docker stop``, unloading its stubs."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def child_processes(parent_pid: int) -> List[Tuple[int, List[bytes]]]:
    """(pid, argv) of every live child of ``parent_pid`` (zombies left out)."""
    children = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) != parent_pid or fields[0] == "Z":
                continue
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        children.append((int(proc.name), args))
    return children


# What every Python-backend stub's shared-memory region in /dev/shm is named.
_SHM_PREFIX = b"triton_python_backend_shm_region_"


def _stub_table(children: List[Tuple[int, List[bytes]]]) -> Dict[str, Dict[int, str]]:
    """Model name → {stub pid: its /dev/shm region name} among ``children``: a stub's
    arguments are ``<repository>/<model>/<version>/model.py`` and its region's name."""
    table: Dict[str, Dict[int, str]] = {}
    for pid, args in children:
        if len(args) > 1 and args[0].endswith(b"triton_python_backend_stub"):
            model = Path(args[1].decode(errors="replace")).parent.parent.name
            region = next((a.decode() for a in args
                           if a.startswith(_SHM_PREFIX) and b"/" not in a), "")
            table.setdefault(model, {})[pid] = region
    return table


def stub_regions(server_pid: int) -> Dict[int, str]:
    """Stub pid → the name of its shared-memory region in /dev/shm."""
    return {pid: region for stubs in _stub_table(child_processes(server_pid)).values()
            for pid, region in stubs.items() if region}


def stub_processes(server_pid: int) -> Dict[str, List[int]]:
    """Model name → pids of the Python-backend stubs that ``server_pid`` runs for it."""
    return {model: list(stubs) for model, stubs in
            _stub_table(child_processes(server_pid)).items()}


def server_memory(server_pid: int) -> Dict[str, float]:
    """Proportional memory (PSS, MB) of tritonserver (``"tritonserver"``) and of its stubs,
    summed per model; shared memory is split among the processes that map it, so the values
    add up to what the server holds."""
    named = [(server_pid, "tritonserver")] + [
        (pid, model) for model, stubs in _stub_table(child_processes(server_pid)).items()
        for pid in stubs]
    totals: Dict[str, float] = {}
    for pid, name in named:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        pss = next((int(line.split()[1]) for line in rollup.splitlines()
                    if line.startswith("Pss:")), 0)
        totals[name] = totals.get(name, 0.0) + pss / 1024
    return totals


def _process_start(pid: int) -> Optional[str]:
    """The start time of a running ``pid`` (tells it from a later process given the same
    pid); ``None`` when no such process runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


#: Seconds a stopping tritonserver still gets once the last of its Python-backend stubs has
#: gone, before it is killed. Measured on tritonserver 2.51: when a stub is killed while a
#: request runs on it, that request never completes, so the unload the supervisor then asks
#: for never finishes either (the reload still replaces the model). On SIGTERM tritonserver
#: unloads every live model within a second or two, then waits the whole exit timeout on the
#: dead instance ("Found 1 live models"), holding its ports. Once no stub is left there is
#: nothing it can still finish: a clean stop exits well within this grace.
DEAD_INSTANCE_GRACE = 2.0


def stop_tritonserver(pid: int, timeout: float, exited: Callable[[float], bool]) -> str:
    """Stop the tritonserver ``pid`` started in its own session: SIGTERM, then wait for it
    (``exited(seconds)`` waits up to ``seconds`` and says whether it has exited) until it
    exits, until ``timeout`` seconds have passed, or until :data:`DEAD_INSTANCE_GRACE`
    seconds after the last of its Python-backend stubs has gone; in the latter two cases kill
    its process group. Removes the shared-memory regions its stubs leave. Returns how it
    ended: ``"exited"`` or why it was killed."""
    regions = list(stub_regions(pid).values())
    had_stubs = bool(regions)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    started = time.monotonic()
    deadline = started + timeout
    no_stubs_since: Optional[float] = None
    how = f"killed: still running {timeout:.0f} s after SIGTERM"
    while time.monotonic() < deadline:
        if exited(0.2):
            how = "exited"
            break
        if had_stubs and not _stub_table(child_processes(pid)):
            no_stubs_since = no_stubs_since or time.monotonic()
            if time.monotonic() - no_stubs_since >= DEAD_INSTANCE_GRACE:
                how = (f"killed: every model unloaded but still running "
                       f"{time.monotonic() - started:.1f} s after SIGTERM (waiting on a model "
                       f"instance whose stub died)")
                break
        else:
            no_stubs_since = None
    try:  # tritonserver if it is still up, and any stub left in its process group
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for region in regions:
        Path("/dev/shm", region).unlink(missing_ok=True)
    return how


def start_watchdog(server_pid: int, timeout: float,
                   log_file=None) -> Optional[subprocess.Popen]:
    """A process that stops tritonserver ``server_pid`` (:func:`stop_tritonserver`) once this
    process is gone, ``kill -9`` included: it waits for end-of-file on a pipe only this
    process holds. Close its stdin after stopping the server yourself; it then just exits.

    The kernel also sends the server SIGTERM when this process dies (PR_SET_PDEATHSIG), but
    only the watchdog can kill a server that does not exit then (see
    :data:`DEAD_INSTANCE_GRACE`). It says what it did on ``log_file`` (the server's log) and
    holds no other output open (a caller reading serve's output to its end would otherwise
    wait for it). ``None`` when it cannot be started."""
    start = _process_start(server_pid)
    if start is None:
        return None
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "hpi_triton.watchdog", str(server_pid), start, str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=log_file if log_file is not None else subprocess.DEVNULL,
            start_new_session=True)
    except OSError:
        return None


def watch(server_pid: int, start: str, timeout: float) -> None:
    """The watchdog's body (:func:`start_watchdog`): block until stdin ends, then stop the
    server if it is still the one started at ``start``."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A terminal's Ctrl-C or a process manager's SIGTERM to everything: the parent then
        # stops the server and closes the pipe; stopping it twice would not be bounded.
        signal.signal(signum, signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    if _process_start(server_pid) != start:
        return

    def exited(seconds: float) -> bool:
        time.sleep(seconds)
        return _process_start(server_pid) != start

    how = stop_tritonserver(server_pid, timeout, exited)
    print(f"hpi-triton watchdog: the serve that started tritonserver {server_pid} is gone; "
          f"tritonserver {how}", file=sys.stderr, flush=True)


class ModelSupervisor(threading.Thread):
    """Brings back a served model whose Python-backend stub died.

    tritonserver 2.51 keeps such a model READY while every request to it fails ("Stub process
    ... is not healthy"). The supervisor watches each model's stub processes; when one is gone
    it unloads the model (the server and the model then answer not ready, so a load balancer
    takes the replica out of rotation, and pipeline graphs answer UNAVAILABLE naming the
    model) and loads it again through Triton's model-control API (``--model-control-mode
    explicit``). A model that fails to load ``max_attempts`` times in a row is given up:
    ``on_give_up`` is called (``hpi-triton serve`` then stops and exits non-zero, so a
    process manager restarts the whole server).
    """

    def __init__(self, server: TritonServer, interval: float = 0.5, max_attempts: int = 5,
                 on_give_up: Optional[Callable[[str, str], None]] = None):
        super().__init__(name="hpi-triton-supervisor", daemon=True)
        self.server = server
        self.interval = interval
        self.max_attempts = max_attempts
        self.on_give_up = on_give_up
        self.expected: Dict[str, int] = {}
        #: (model, reason) of the models given up.
        self.given_up: List[tuple] = []
        #: (model, seconds from noticing to serving again) per recovery, for callers.
        self.recoveries: List[tuple] = []
        self._stop_event = threading.Event()
        self.log = logging.getLogger("hpi_triton.supervisor")

    def stop(self) -> None:
        """End the watch loop, interrupting a reload's back-off too."""
        self._stop_event.set()

    def run(self) -> None:
        """Watch each model's stub processes and reload a model whose stub died.

        Checks every ``interval`` seconds and removes a dead stub's shared-memory region from
        /dev/shm. Returns once stopped or once tritonserver has exited.
        """
        pid = self.server.process.pid
        seen = _stub_table(child_processes(pid))
        self.expected = {model: len(stubs) for model, stubs in seen.items()}
        while not self._stop_event.wait(self.interval):
            if self.server.process.poll() is not None:
                return
            current = _stub_table(child_processes(pid))
            for model, count in self.expected.items():
                if len(current.get(model, {})) < count and not self._stop_event.is_set():
                    self._recover(model, count)
                    # A killed stub cannot remove its region: 32 MiB or more of RAM (tmpfs)
                    # per crash would stay in /dev/shm for good.
                    for stub, region in seen.get(model, {}).items():
                        if stub not in current.get(model, {}) and region:
                            Path("/dev/shm", region).unlink(missing_ok=True)
                    current = _stub_table(child_processes(pid))
            seen = current

    def _recover(self, model: str, count: int) -> None:
        started = time.monotonic()
        self.log.warning("model %r: a Python-backend stub died; reloading it", model)
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                self.server.model_control(model, "unload")
                self._wait_unloaded(model)
                self.server.model_control(model, "load")
            except ServerError as exc:
                reason = str(exc)
                self.log.warning("model %r: reload attempt %d/%d failed: %s", model, attempt,
                                 self.max_attempts, reason)
                if self._stop_event.wait(min(2.0 * attempt, 10.0)):
                    return
                continue
            self.expected[model] = len(stub_processes(self.server.process.pid).get(model, [])) \
                or count
            took = time.monotonic() - started
            self.recoveries.append((model, took))
            self.log.warning("model %r: serving again after %.1f s", model, took)
            return
        self.log.error("model %r could not be reloaded after %d attempts: %s", model,
                       self.max_attempts, reason)
        self.given_up.append((model, reason))
        if self.on_give_up is not None:
            self.on_give_up(model, reason)

    def _wait_unloaded(self, model: str, timeout: float = 5.0) -> None:
        # A request that was in flight on the dead stub never completes, which holds the
        # unload in UNLOADING for good; a load then still replaces the model (measured on
        # tritonserver 2.51), so waiting longer gains nothing.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {m.get("name"): m.get("state") for m in self.server.repository_index()}
            if states.get(model) not in ("READY", "UNLOADING", "LOADING"):
                return
            time.sleep(0.1)


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
                 log_verbose: int = 0, exit_timeout: Optional[int] = None,
                 supervise: bool = True, check_environment: bool = True,
                 on_give_up: Optional[Callable[[str, str], None]] = None):
        self.exit_timeout = (self.default_exit_timeout if exit_timeout is None
                             else int(exit_timeout))
        # A local folder, or a URL tritonserver reads itself (s3://, gs://, as://).
        self.repository = (str(repository) if "://" in str(repository)
                           else Path(repository).expanduser().resolve())
        self.ports = {"http": http_port or free_port(), "grpc": grpc_port or free_port(),
                      "metrics": metrics_port or free_port()}
        self.tritonserver = tritonserver
        self.log_path = Path(log_path) if log_path else None
        self.extra_args = list(extra_args or [])
        self.log_verbose = log_verbose
        self.process: Optional[subprocess.Popen] = None
        self._log_file = None
        self.supervise = supervise
        self.check_environment = check_environment
        self.on_give_up = on_give_up
        self.supervisor: Optional[ModelSupervisor] = None
        self._watchdog: Optional[subprocess.Popen] = None

    @property
    def http_url(self) -> str:
        """The HTTP endpoint, ``localhost:PORT``."""
        return f"localhost:{self.ports['http']}"

    @property
    def grpc_url(self) -> str:
        """The gRPC endpoint, ``localhost:PORT``."""
        return f"localhost:{self.ports['grpc']}"

    @property
    def metrics_url(self) -> str:
        """The URL of the Prometheus metrics."""
        return f"http://localhost:{self.ports['metrics']}/metrics"

    def command(self, binary: TritonBinary) -> List[str]:
        """Return the tritonserver command line for this server.

        With supervision on (and no model-control mode given) it uses explicit model control with
        every model loaded, so the supervisor can reload models.
        """
        cmd = [str(binary.executable), "--model-repository", str(self.repository),
               "--http-port", str(self.ports["http"]), "--grpc-port", str(self.ports["grpc"]),
               "--metrics-port", str(self.ports["metrics"]), "--log-verbose",
               str(self.log_verbose), "--exit-on-error", "true", "--strict-readiness", "true",
               "--exit-timeout-secs", str(self.exit_timeout)]
        if self.supervise and "--model-control-mode" not in " ".join(self.extra_args):
            # The supervisor reloads models whose stub died: that needs the load/unload API.
            cmd += ["--model-control-mode", "explicit", "--load-model", "*"]
        return cmd + with_backend_defaults(binary, self.extra_args)

    def start(self, timeout: float = 300.0) -> TritonServer:
        """Start tritonserver, wait until it is ready, then start the supervisor when supervising.

        Args:
            timeout: Seconds to wait for readiness before stopping the server.

        Returns:
            ``self``.

        Raises:
            ServerError: the repository is not a directory, or the server exited or was not ready
                in time (naming the models that failed to load, when it exited).
            PortInUseError: one of the ports is taken by another process.
        """
        problem = repository_problem(self.repository)
        if problem:
            raise ServerError(problem)
        check_ports_free(self.ports)
        binary = find_tritonserver(self.tritonserver)
        if self.check_environment:
            check_stub_environment(binary)
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="tritonserver-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "wb")
        parent = os.getpid()
        self.process = subprocess.Popen(self.command(binary), stdout=self._log_file,
                                        stderr=subprocess.STDOUT, env=binary.env,
                                        start_new_session=True,
                                        preexec_fn=lambda: _bind_to_parent(parent))
        self._watchdog = start_watchdog(self.process.pid, self.exit_timeout + self.kill_grace,
                                        self._log_file)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_watchdog()
                self._close_log()
                raise ServerError(self._failure_message())
            if self.is_ready():
                if self.supervise:
                    self.supervisor = ModelSupervisor(self, on_give_up=self.on_give_up)
                    self.supervisor.start()
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerError(f"tritonserver was not ready after {timeout:.0f} s; see "
                          f"{self.log_path}")

    def is_ready(self) -> bool:
        """Return whether ``/v2/health/ready`` answers 200; ``False`` when nothing answers."""
        url = f"http://localhost:{self.ports['http']}/v2/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    @property
    def given_up(self) -> List[tuple]:
        """(model, reason) of every model the supervisor could not bring back."""
        return list(self.supervisor.given_up) if self.supervisor is not None else []

    def _http(self, method: str, path: str, timeout: float = 600.0, tries: int = 3):
        request = urllib.request.Request(f"http://localhost:{self.ports['http']}{path}",
                                         data=b"" if method == "POST" else None, method=method)
        for attempt in range(tries):
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    body = response.read()
                return json.loads(body) if body else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")
                raise ServerError(f"{method} {path}: HTTP {exc.code} {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                # A busy server has reset a fresh connection now and then (seen on
                # tritonserver 2.51 while a stub had just died): ask again.
                if attempt == tries - 1:
                    raise ServerError(f"{method} {path}: {exc}") from None
                time.sleep(0.2)
        return None

    def model_control(self, model: str, action: str) -> None:
        """``load`` or ``unload`` ``model`` (needs ``--model-control-mode explicit``)."""
        self._http("POST", f"/v2/repository/models/{model}/{action}")

    def repository_index(self) -> List[dict]:
        """Triton's repository index: name, version and state of every model."""
        return self._http("POST", "/v2/repository/index", timeout=30) or []

    def log_text(self) -> str:
        """Return tritonserver's log so far; empty when there is none or it cannot be read."""
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

    #: Seconds past the exit timeout a stopping server gets before it and its stubs are killed.
    kill_grace = 5

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the server as a process manager does (SIGTERM); kill it and its stubs if it is
        still running ``timeout`` seconds later (default: its exit timeout +
        :attr:`kill_grace`), or :data:`DEAD_INSTANCE_GRACE` seconds after its last
        Python-backend stub has gone (see :func:`stop_tritonserver`)."""
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.process is not None and self.process.poll() is None:
            process = self.process

            def exited(seconds: float) -> bool:
                try:
                    process.wait(timeout=seconds)
                except subprocess.TimeoutExpired:
                    return False
                return True

            how = stop_tritonserver(process.pid, self.exit_timeout + self.kill_grace
                                    if timeout is None else timeout, exited)
            if how != "exited":
                logging.getLogger("hpi_triton.server").warning("tritonserver %s", how)
            process.wait()
        self._close_watchdog()
        self._close_log()

    def _close_watchdog(self) -> None:
        # The watchdog finds the server gone and exits; it never stops a server by itself
        # while this process lives.
        if self._watchdog is not None:
            try:
                self._watchdog.stdin.close()
                self._watchdog.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C stops it)."""
        assert self.process is not None
        try:
            code = self.process.wait()
        except KeyboardInterrupt:
            self.stop()
            return 0
        self.stop()  # exited by itself: stop the supervisor, remove what its stubs left
        return code

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
