"""The API as a supervised child of ``hpi-triton serve``.

The child is ``python -m hpi_triton.cli api ...`` bound to its parent like tritonserver (it
gets SIGTERM when serve dies, ``kill -9`` included). :class:`ApiProcess` waits until its
``/health`` answers, and a watcher thread restarts it when it exits on its own, up to
``max_restarts`` times in ``window`` seconds; past that it calls ``on_give_up`` (serve then
stops with a non-zero code).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional

from hpi_triton.errors import PortInUseError, ServerError


class ApiProcess:
    """Runs and heals the PaddleX API process.

    Args:
        args: ``hpi-triton api`` arguments (``--triton-url``, ``--port``, ...).
        port: The port it listens on (readiness is checked there).
        log_path: Where its output goes.
        on_give_up: Called with the reason when it cannot be kept running.
    """

    def __init__(self, args: List[str], port: int, log_path: Optional[Path] = None,
                 on_give_up: Optional[Callable[[str], None]] = None, max_restarts: int = 5,
                 window: float = 60.0):
        self.args = list(args)
        self.port = port
        self.log_path = log_path
        self.on_give_up = on_give_up
        self.max_restarts = max_restarts
        self.window = window
        self.process: Optional[subprocess.Popen] = None
        self.restarts: List[float] = []
        self.given_up: Optional[str] = None
        self._stopping = threading.Event()
        self._watcher: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The API's base URL on this machine."""
        return f"http://localhost:{self.port}"

    def _spawn(self) -> None:
        from hpi_triton.server import bind_to_parent

        parent = os.getpid()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hpi_triton.cli", "api", *self.args],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda: bind_to_parent(parent))
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the PaddleX API exited with code "
                                  f"{self.process.returncode} while starting; see "
                                  f"{self.log_path}")
            if self.healthy():
                return
            time.sleep(0.2)
        raise ServerError(f"the PaddleX API was not healthy after {timeout:.0f} s on "
                          f"{self.url}; see {self.log_path}")

    def start(self, timeout: float = 60.0) -> ApiProcess:
        """Start it, wait for ``/health``, then watch it.

        Raises:
            PortInUseError: the port is taken.
            ServerError: it exited or was not healthy in time.
        """
        from hpi_triton.server import port_is_free

        if not port_is_free(self.port, "0.0.0.0"):
            raise PortInUseError(f"--paddlex-api-port {self.port} is taken by another "
                                 f"process; pass another or --no-paddlex-api")
        self._spawn()
        try:
            self._wait_ready(timeout)
        except ServerError:
            self.stop()
            raise
        self._watcher = threading.Thread(target=self._watch, name="paddlex-api-watch",
                                         daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            code = self.process.poll()
            if code is None:
                continue
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self.window]
            if len(self.restarts) >= self.max_restarts:
                self.given_up = (f"the PaddleX API exited (code {code}) {len(self.restarts)} "
                                 f"times in {self.window:.0f} s")
                if self.on_give_up is not None:
                    self.on_give_up(self.given_up)
                return
            self.restarts.append(now)
            self._spawn()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` s."""
        self._stopping.set()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
