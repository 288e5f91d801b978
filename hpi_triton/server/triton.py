"""``TritonServer``: one real tritonserver on a repository, started, health-checked, supervised
and stopped."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional

from hpi_triton.errors import (
    ServerError,
)
from hpi_triton.server.binary import find_tritonserver, with_backend_defaults
from hpi_triton.server.checks import check_ports_free, free_ports, repository_problem
from hpi_triton.server.environment import TritonBinary, check_stub_environment
from hpi_triton.server.lifecycle import start_watchdog, stop_tritonserver
from hpi_triton.server.processes import LOAD_FAILURE, bind_to_parent
from hpi_triton.server.supervisor import ModelSupervisor


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
        spare = iter(free_ports(3))
        self.ports = {"http": http_port or next(spare), "grpc": grpc_port or next(spare),
                      "metrics": metrics_port or next(spare)}
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
                                        preexec_fn=lambda: bind_to_parent(parent))
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
        failures = LOAD_FAILURE.findall(text)
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
