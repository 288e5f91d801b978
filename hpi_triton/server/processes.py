"""Reading a running server's process tree from /proc: its stubs, their shared-memory
regions, memory (PSS), start times; binding a child to its parent's life."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

LOAD_FAILURE = re.compile(r"failed to load '([^']+)'[^:]*: (.*)")

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def bind_to_parent(parent_pid: int) -> None:
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


def stub_table(children: List[Tuple[int, List[bytes]]]) -> Dict[str, Dict[int, str]]:
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
    return {pid: region for stubs in stub_table(child_processes(server_pid)).values()
            for pid, region in stubs.items() if region}


def stub_processes(server_pid: int) -> Dict[str, List[int]]:
    """Model name → pids of the Python-backend stubs that ``server_pid`` runs for it."""
    return {model: list(stubs) for model, stubs in
            stub_table(child_processes(server_pid)).items()}


def server_memory(server_pid: int) -> Dict[str, float]:
    """Proportional memory (PSS, MB) of tritonserver (``"tritonserver"``) and of its stubs,
    summed per model; shared memory is split among the processes that map it, so the values
    add up to what the server holds."""
    named = [(server_pid, "tritonserver")] + [
        (pid, model) for model, stubs in stub_table(child_processes(server_pid)).items()
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


def process_start(pid: int) -> Optional[str]:
    """The start time of a running ``pid`` (tells it from a later process given the same
    pid); ``None`` when no such process runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]
