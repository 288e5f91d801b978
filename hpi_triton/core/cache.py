"""Content-addressed cache of converted, verified artifacts and of measurements.

An entry's key hashes everything that decides its bytes: the model files, backend, precision,
shapes, device and its architecture, and the versions of the libraries involved. Entries are
built in a private temp dir and renamed into place, so concurrent builds never see (or leave)
half an entry; when two builds race, the first rename wins and the other's copy is dropped.
Failed conversions are remembered too, so a warm rebuild does not retry a known failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional, Sequence

from hpi_triton.errors import ConversionError, VerificationError

CACHE_ENV = "HPI_TRITON_CACHE_DIR"
_REMEMBERED = {"ConversionError": ConversionError, "VerificationError": VerificationError}
META = "meta.json"


def default_cache_dir() -> Path:
    """``$HPI_TRITON_CACHE_DIR`` or ``~/.cache/hpi-triton``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "hpi-triton")


def package_versions(packages: Sequence[str]) -> dict:
    """Installed versions of ``packages`` (``None`` for those not installed)."""
    versions = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@cache
def device_architecture(device_kind: str) -> str:
    """A string that changes when the hardware an artifact was tuned and verified on does."""
    if device_kind == "gpu":
        try:
            import subprocess

            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout
            return "gpu:" + out.strip().replace("\n", ";")
        except Exception:
            return "gpu:unknown"
    model, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    # Only the ISA extensions engines dispatch on; other flags vary between identical hosts.
    isa = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "sse4", "vnni")))
    return f"cpu:{platform.machine()}:{model}:{','.join(isa)}"


def cache_key(**parts) -> str:
    """SHA-256 of the parts, as canonical JSON."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def update_with_file(digest, path: Path):
    """Feed the bytes of ``path`` to ``digest`` (a hashlib object) in 1 MiB blocks; ``digest``."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest


#: Appended to a failure raised again from the cache.
CACHED_FAILURE = " (cached failure; rebuild with --no-cache to retry)"


@dataclass
class CacheEntry:
    """A finished entry: its folder and its metadata."""

    directory: Path
    meta: dict
    hit: bool


class ArtifactCache:
    """Artifacts under ``root/artifacts/<key>``, failures under ``root/failures/<key>.json``."""

    def __init__(self, root: Optional[Path] = None, enabled: bool = True):
        self.root = Path(root or default_cache_dir()).expanduser()
        self.enabled = enabled
        for sub in ("artifacts", "failures", "measurements", "tmp"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def _temp_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="entry-", dir=self.root / "tmp"))

    def get_or_create(self, key: str, create: Callable[[Path], dict]) -> CacheEntry:
        """Return the entry for ``key``, creating it with ``create(folder) -> meta`` if absent.

        ``create`` writes the artifact files into the folder it is given. A
        :class:`ConversionError` it raises is remembered under the key and raised again by
        later calls (marked as cached) without calling ``create``.
        """
        final = self.root / "artifacts" / key
        failure = self.root / "failures" / f"{key}.json"
        if self.enabled:
            if (final / META).is_file():
                return CacheEntry(final, json.loads((final / META).read_text()), hit=True)
            if failure.is_file():
                record = json.loads(failure.read_text())
                error_type = _REMEMBERED.get(record.get("type"), ConversionError)
                raise error_type(f"{record['error']}{CACHED_FAILURE}")
        work = self._temp_dir()
        try:
            meta = create(work)
            (work / META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        except tuple(_REMEMBERED.values()) as exc:
            shutil.rmtree(work, ignore_errors=True)
            # An entry built on another's cached failure records the bare reason, so the
            # note is said once however deep the entries nest.
            self.write_json(failure, {"error": str(exc).replace(CACHED_FAILURE, ""),
                                      "type": type(exc).__name__})
            raise
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        if not self.enabled:
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(work, final)
        except OSError:
            # Another build finished the same entry first; its copy is equivalent.
            shutil.rmtree(work, ignore_errors=True)
            if not (final / META).is_file():
                raise
        return CacheEntry(final, json.loads((final / META).read_text()), hit=False)

    def read_json(self, path: Path) -> Optional[dict]:
        """Return the JSON at ``path``; ``None`` when caching is off or the file is absent."""
        if not self.enabled or not path.is_file():
            return None
        return json.loads(path.read_text())

    def write_json(self, path: Path, value: dict) -> None:
        """Write ``value`` atomically (temp file + ``os.replace``)."""
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(value, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def measurement_path(self, key: str) -> Path:
        """Return the file where the measurement under ``key`` is kept."""
        return self.root / "measurements" / f"{key}.json"
