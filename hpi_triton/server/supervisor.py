"""The supervisor thread that brings back a served model whose Python-backend stub died."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from hpi_triton.errors import (
    ServerError,
)
from hpi_triton.server.processes import child_processes, stub_processes, stub_table


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

    def __init__(self, server, interval: float = 0.5, max_attempts: int = 5,
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
        seen = stub_table(child_processes(pid))
        self.expected = {model: len(stubs) for model, stubs in seen.items()}
        while not self._stop_event.wait(self.interval):
            if self.server.process.poll() is not None:
                return
            current = stub_table(child_processes(pid))
            for model, count in self.expected.items():
                if len(current.get(model, {})) < count and not self._stop_event.is_set():
                    self._recover(model, count)
                    # A killed stub cannot remove its region: 32 MiB or more of RAM (tmpfs)
                    # per crash would stay in /dev/shm for good.
                    for stub, region in seen.get(model, {}).items():
                        if stub not in current.get(model, {}) and region:
                            Path("/dev/shm", region).unlink(missing_ok=True)
                    current = stub_table(child_processes(pid))
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
