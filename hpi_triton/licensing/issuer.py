"""The vendor's side: issuer keys, serial numbers, bindings and certificates.

An issuer folder (``hpi-triton license keygen --out issuer/``) holds ``private.pem`` (Ed25519
signing key, mode 0600), ``content.seed`` (32 random bytes the pipelines' content keys derive
from, 0600), ``public.pem`` (the Ed25519 public key, then one X25519 content public key per
pipeline, each after a ``# pipeline: NAME`` line) and ``serials.jsonl`` (issued serials).
Bindings live in a database (:class:`BindingStore`: SQLite file, or a PostgreSQL URL): a
serial binds to the first fingerprint that activates it, once, atomically; the same
fingerprint asking again gets a fresh certificate; a revoked serial gets none.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from hpi_triton.ensembles import pipeline_names
from hpi_triton.errors import LicensingError
from hpi_triton.python_backend.licensing import certificate as cert
from hpi_triton.python_backend.licensing import content

SERIAL_PATTERN = re.compile(r"^HPI(-[A-Z2-7]{5}){4}$")
FINGERPRINT_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def keygen(out: Path) -> Path:
    """Create an issuer folder; refuses to overwrite an existing key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out = Path(out)
    if (out / "private.pem").exists():
        raise LicensingError(f"{out / 'private.pem'} exists; keygen never overwrites an "
                             f"issuer key (choose another --out)")
    out.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    seed = secrets.token_bytes(32)
    _write_secret(out / "private.pem", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    _write_secret(out / "content.seed", seed)
    (out / "public.pem").write_text(public_pem(key, seed))
    return out


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def public_pem(key, seed: bytes) -> str:
    """The issuer's public.pem text: its signing key and one content public key per pipeline."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    parts = [key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo
                                           ).decode()]
    for pipeline in pipeline_names():
        public = X25519PublicKey.from_public_bytes(content.content_public_bytes(
            content.content_private_bytes(seed, pipeline)))
        parts.append(f"# pipeline: {pipeline}\n" + public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode())
    return "".join(parts)


@dataclass
class IssuerPublic:
    """What a licensed build needs: the signing public key (PEM) and the content public
    keys by pipeline (raw bytes)."""

    signing_pem: str
    content: Dict[str, bytes]


def read_public(path: Path) -> IssuerPublic:
    """Read an issuer's public.pem (or the folder holding it).

    Raises:
        LicensingError: the file is missing, unreadable or holds no signing key.
    """
    from cryptography.hazmat.primitives import serialization

    path = Path(path)
    if path.is_dir():
        path = path / "public.pem"
    try:
        text = path.read_text()
    except OSError as exc:
        raise LicensingError(f"--license {path}: not readable ({exc}); give the issuer's "
                             f"public.pem (from hpi-triton license keygen)") from exc
    blocks = re.findall(r"(?:# pipeline: (\S+)\n)?(-----BEGIN PUBLIC KEY-----.+?"
                        r"-----END PUBLIC KEY-----\n?)", text, re.S)
    if not blocks or blocks[0][0]:
        raise LicensingError(f"--license {path}: expected the issuer's public.pem (an Ed25519 "
                             f"public key, then '# pipeline: NAME' content keys)")
    content_keys = {}
    for pipeline, pem in blocks[1:]:
        key = serialization.load_pem_public_key(pem.encode())
        content_keys[pipeline] = key.public_bytes(serialization.Encoding.Raw,
                                                  serialization.PublicFormat.Raw)
    serialization.load_pem_public_key(blocks[0][1].encode())  # a valid key, or an error
    return IssuerPublic(signing_pem=blocks[0][1], content=content_keys)


class Issuer:
    """An issuer folder opened for signing."""

    def __init__(self, folder: Path):
        from cryptography.hazmat.primitives import serialization

        self.folder = Path(folder)
        try:
            self.key = serialization.load_pem_private_key(
                (self.folder / "private.pem").read_bytes(), password=None)
            self.seed = (self.folder / "content.seed").read_bytes()
        except (OSError, ValueError) as exc:
            raise LicensingError(f"--key {self.folder}: not an issuer folder ({exc}); create "
                                 f"one with hpi-triton license keygen --out DIR") from exc
        self._lock = threading.Lock()

    # -- serials ------------------------------------------------------------------------
    @property
    def registry(self) -> Path:
        """The serial registry, ``serials.jsonl``: one JSON record per issued serial."""
        return self.folder / "serials.jsonl"

    def issue(self, pipeline: str, count: int = 1, expires: Optional[str] = None) -> List[str]:
        """Issue ``count`` new serials for ``pipeline`` and append them to the registry.

        Args:
            pipeline: The pipeline the serials unlock.
            count: How many serials to issue.
            expires: Expiry date ``YYYY-MM-DD`` of their certificates; ``None``: they never expire.

        Returns:
            The new serials, ``HPI-XXXXX-XXXXX-XXXXX-XXXXX``.

        Raises:
            LicensingError: an unknown pipeline, a malformed date or a count below 1.
        """
        if pipeline not in pipeline_names():
            raise LicensingError(f"--pipeline {pipeline!r} is not a pipeline; known: "
                                 f"{', '.join(pipeline_names())}")
        if expires is not None:
            try:
                _dt.date.fromisoformat(expires)
            except ValueError:
                raise LicensingError(f"--expires {expires!r}: expected a date YYYY-MM-DD") from None
        if count < 1:
            raise LicensingError(f"--count {count}: expected at least 1")
        serials = []
        with self._lock, open(self.registry, "a", encoding="utf-8") as handle:
            for _ in range(count):
                token = base64.b32encode(secrets.token_bytes(15)).decode()[:20]
                serial = "HPI-" + "-".join(token[i:i + 5] for i in range(0, 20, 5))
                handle.write(json.dumps({"serial": serial, "pipeline": pipeline,
                                         "expires": expires, "issued": cert.today()}) + "\n")
                serials.append(serial)
        return serials

    def serials(self) -> Dict[str, Dict]:
        """Return every issued serial's registry record by serial; empty without a registry."""
        out = {}
        try:
            lines = self.registry.read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            if line.strip():
                record = json.loads(line)
                out[record["serial"]] = record
        return out

    # -- certificates -------------------------------------------------------------------
    def certificate(self, record: Dict, fingerprint: str) -> Dict:
        """Return the signed certificate binding ``record``'s serial to the device ``fingerprint``.

        It carries the pipeline's content private key sealed so that only that device opens it.
        """
        pipeline_key = content.content_private_bytes(self.seed, record["pipeline"])
        payload = {"serial": record["serial"], "pipeline": record["pipeline"],
                   "fingerprint": fingerprint, "expires": record.get("expires"),
                   "issued": cert.today(),
                   "content_key": cert.seal_for_device(pipeline_key, fingerprint,
                                                       record["serial"])}
        return cert.sign_payload(self.key, payload)

    def revocation_list(self, serials: List[str]) -> Dict:
        """Return the signed revocation list of ``serials``."""
        document = cert.sign_payload(self.key, {"serials": sorted(serials),
                                                "issued": cert.today()})
        document["format"] = cert.REVOCATIONS_FORMAT
        return document


def validate_request(request: Dict) -> tuple:
    """(serial, fingerprint) of an activation request, or LicensingError naming the field."""
    if not isinstance(request, dict):
        raise LicensingError("the request must be a JSON object with 'serial' and "
                             "'fingerprint'")
    serial, fingerprint = request.get("serial"), request.get("fingerprint")
    if not isinstance(serial, str) or not SERIAL_PATTERN.match(serial):
        raise LicensingError(f"field 'serial' is {serial!r}; expected HPI-XXXXX-XXXXX-XXXXX-"
                             f"XXXXX")
    if not isinstance(fingerprint, str) or not FINGERPRINT_PATTERN.match(fingerprint):
        raise LicensingError(f"field 'fingerprint' is {str(fingerprint)[:80]!r}; expected 64 "
                             f"hex characters (hpi-triton license fingerprint)")
    return serial, fingerprint


class BindingStore:
    """Serial → fingerprint bindings and revocations (SQLite file, or ``postgresql://``)."""

    def __init__(self, url: str):
        self.url = str(url)
        self.postgres = self.url.startswith(("postgresql://", "postgres://"))
        self._local = threading.local()
        with self._connect() as db:
            db.cursor().execute(
                "CREATE TABLE IF NOT EXISTS bindings (serial TEXT PRIMARY KEY, "
                "fingerprint TEXT NOT NULL, bound_at TEXT NOT NULL)")
            db.cursor().execute(
                "CREATE TABLE IF NOT EXISTS revoked (serial TEXT PRIMARY KEY, "
                "revoked_at TEXT NOT NULL)")

    def _connect(self):
        if self.postgres:  # not verified on this machine: no PostgreSQL here
            import psycopg

            return psycopg.connect(self.url, autocommit=False)
        db = sqlite3.connect(self.url, timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        return _SqliteTx(db)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def bind(self, serial: str, fingerprint: str) -> str:
        """Bind ``serial`` to ``fingerprint`` unless bound already; returns the bound
        fingerprint (the existing one when another device got there first)."""
        with self._connect() as db:
            cur = db.cursor()
            cur.execute(self._q("INSERT INTO bindings (serial, fingerprint, bound_at) "
                                "VALUES (?, ?, ?) ON CONFLICT (serial) DO NOTHING"),
                        (serial, fingerprint, _dt.datetime.now(_dt.timezone.utc).isoformat()))
            cur.execute(self._q("SELECT fingerprint FROM bindings WHERE serial = ?"), (serial,))
            return cur.fetchone()[0]

    def revoke(self, serial: str) -> None:
        """Mark ``serial`` revoked; revoking it twice changes nothing."""
        with self._connect() as db:
            db.cursor().execute(self._q("INSERT INTO revoked (serial, revoked_at) VALUES (?, ?) "
                                        "ON CONFLICT (serial) DO NOTHING"),
                                (serial, _dt.datetime.now(_dt.timezone.utc).isoformat()))

    def revoked(self) -> List[str]:
        """Return every revoked serial."""
        with self._connect() as db:
            cur = db.cursor()
            cur.execute("SELECT serial FROM revoked")
            return [row[0] for row in cur.fetchall()]

    def is_revoked(self, serial: str) -> bool:
        """Return whether ``serial`` is revoked."""
        with self._connect() as db:
            cur = db.cursor()
            cur.execute(self._q("SELECT 1 FROM revoked WHERE serial = ?"), (serial,))
            return cur.fetchone() is not None


class _SqliteTx:
    """A SQLite connection used as ``with``: BEGIN IMMEDIATE … COMMIT (or ROLLBACK), so a
    bind is one atomic write even across processes sharing the file."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self

    def cursor(self):
        return self.db.cursor()

    def __exit__(self, kind, value, tb):
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
        self.db.close()


def activate(issuer: Issuer, store: BindingStore, request: Dict) -> Dict:
    """One activation: validate, look the serial up, bind once, sign. LicensingError with
    the reason otherwise."""
    serial, fingerprint = validate_request(request)
    record = issuer.serials().get(serial)
    if record is None:
        raise LicensingError(f"serial {serial} was not issued by this issuer")
    if store.is_revoked(serial):
        raise LicensingError(f"serial {serial} has been revoked")
    expires = record.get("expires")
    if expires and cert.today() > expires:
        raise LicensingError(f"serial {serial} expired on {expires}")
    bound = store.bind(serial, fingerprint)
    if bound != fingerprint:
        raise LicensingError(f"serial {serial} is already activated on another device")
    return issuer.certificate(record, fingerprint)
