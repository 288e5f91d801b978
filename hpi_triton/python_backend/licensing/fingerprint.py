"""The device fingerprint a certificate is bound to.

Sources, all stable across reboots and server restarts (read from ``$HPI_TRITON_FINGERPRINT_ROOT``,
default ``/``, so a container can read its host's):

- ``etc/machine-id`` (or ``var/lib/dbus/machine-id``): systemd's per-installation id — required;
- ``sys/class/net/*/address`` of physical NICs (those with a ``device`` link; virtual ones such
  as docker0, veth*, ifb* come and go and are left out);
- ``sys/block/*/device/serial`` or ``wwid`` of disks;
- the CPU model name from ``proc/cpuinfo``.

The fingerprint is SHA-256 over those values, in a fixed order, as hex. Inside a container,
mount the host's files read-only and point the root at them, e.g. ``docker run -v
/etc/machine-id:/host/etc/machine-id:ro -v /sys:/host/sys:ro -v /proc/cpuinfo:/host/proc/cpuinfo:ro
-e HPI_TRITON_FINGERPRINT_ROOT=/host``; without that, a container's own machine-id is used and
changes whenever the container is recreated.

Shipped in licensed repositories' runtime package (gate and engine models) and used by
the host's ``hpi-triton license`` commands.
"""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Dict, List


class FingerprintError(RuntimeError):
    """The fingerprint's required source (machine-id) is missing."""


def _root() -> str:
    return os.environ.get("HPI_TRITON_FINGERPRINT_ROOT", "/")


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def sources(root: str | None = None) -> Dict[str, List[str]]:
    """What the fingerprint is made of, by source (for ``license fingerprint --explain``)."""
    root = root or _root()
    machine_id = _read(os.path.join(root, "etc/machine-id")) or _read(
        os.path.join(root, "var/lib/dbus/machine-id"))
    if not machine_id:
        raise FingerprintError(
            f"no machine-id under {root!r} (etc/machine-id or var/lib/dbus/machine-id); in a "
            f"container mount the host's /etc/machine-id and set HPI_TRITON_FINGERPRINT_ROOT")
    nics = sorted(_read(os.path.join(os.path.dirname(device), "address"))
                  for device in glob.glob(os.path.join(root, "sys/class/net/*/device")))
    disks = sorted(filter(None, (
        _read(os.path.join(block, "device/serial")) or _read(os.path.join(block, "device/wwid"))
        for block in glob.glob(os.path.join(root, "sys/block/*")))))
    cpu = ""
    for line in _read(os.path.join(root, "proc/cpuinfo")).splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"machine_id": [machine_id], "nics": [n for n in nics if n], "disks": disks,
            "cpu": [cpu] if cpu else []}


def device_fingerprint(root: str | None = None) -> str:
    """This machine's fingerprint (64 hex characters)."""
    digest = hashlib.sha256()
    for name, values in sources(root).items():
        digest.update(f"{name}={','.join(values)}\n".encode())
    return digest.hexdigest()
