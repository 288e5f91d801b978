"""Stopping tritonserver in bounded time, and the watchdog process that stops it when the
``hpi-triton serve`` that started it is gone, ``kill -9`` included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from hpi_triton.server.processes import child_processes, process_start, stub_regions, stub_table

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
        if had_stubs and not stub_table(child_processes(pid)):
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
    start = process_start(server_pid)
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
    if process_start(server_pid) != start:
        return

    def exited(seconds: float) -> bool:
        time.sleep(seconds)
        return process_start(server_pid) != start

    how = stop_tritonserver(server_pid, timeout, exited)
    print(f"hpi-triton watchdog: the serve that started tritonserver {server_pid} is gone; "
          f"tritonserver {how}", file=sys.stderr, flush=True)
