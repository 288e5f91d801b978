"""Certificates: what the issuer signs, and what a serving machine checks.

A certificate (``*.lic``, JSON) binds one serial to one pipeline and one device fingerprint
until an expiry date, signed with the issuer's Ed25519 key. It also carries the pipeline's
content key (an X25519 private key derived from the issuer's secret), encrypted with AES-GCM
under a key derived from the device fingerprint and the serial: only this device can unwrap
it, and with it the engine artifacts of repositories built for that pipeline (see
:mod:`content`). A revocation list is a signed JSON list of serials.

Shipped in licensed repositories' runtime package: needs ``cryptography`` only.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import os
from typing import Dict, Iterable, List, Optional

FORMAT = "hpi-triton-license/1"
REVOCATIONS_FORMAT = "hpi-triton-revocations/1"


class LicenseError(RuntimeError):
    """A certificate is missing or not valid here; ``reason`` says which check failed."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def b64(data: bytes) -> str:
    """``data`` as base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Base64 ``text`` decoded (strictly: other characters raise)."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def canonical(payload: Dict) -> bytes:
    """The bytes a payload is signed as: sorted keys, no whitespace, UTF-8."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _device_key(fingerprint: str, serial: str) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=serial.encode(),
                info=b"hpi-triton device key").derive(fingerprint.encode())


def seal_for_device(secret: bytes, fingerprint: str, serial: str) -> str:
    """``secret`` encrypted so that only the device with ``fingerprint`` opens it (AES-GCM)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    return b64(nonce + AESGCM(_device_key(fingerprint, serial)).encrypt(
        nonce, secret, serial.encode()))


def open_for_device(sealed: str, fingerprint: str, serial: str) -> bytes:
    """The secret :func:`seal_for_device` sealed, on the device it was sealed for.

    Raises:
        LicenseError: it was sealed for another device or serial, or was altered.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    data = unb64(sealed)
    try:
        return AESGCM(_device_key(fingerprint, serial)).decrypt(data[:12], data[12:],
                                                                serial.encode())
    except InvalidTag:
        raise LicenseError("other-device", "the certificate's content key does not open on "
                                           "this device") from None


def sign_payload(private_key, payload: Dict) -> Dict:
    """A signed document: ``payload`` with the issuer's Ed25519 signature."""
    return {"format": FORMAT, "payload": payload,
            "signature": b64(private_key.sign(canonical(payload)))}


def verify_signature(public_key, document: Dict, what: str = "certificate") -> Dict:
    """The payload of a signed document, or LicenseError('bad-signature')."""
    from cryptography.exceptions import InvalidSignature

    try:
        payload = document["payload"]
        public_key.verify(unb64(document["signature"]), canonical(payload))
    except (InvalidSignature, KeyError, TypeError, ValueError):
        raise LicenseError("bad-signature", f"the {what}'s signature does not verify with "
                                            f"the issuer's public key: it was edited or "
                                            f"forged") from None
    return payload


def today() -> str:
    """Today's date, ISO format (what expiry dates are compared with)."""
    return _dt.date.today().isoformat()


def check_certificate(document: Dict, public_key, pipeline: str, fingerprint: str,
                      revoked: Iterable[str] = ()) -> Dict:
    """Check a certificate for ``pipeline`` on the device ``fingerprint``: signature,
    pipeline, device, expiry and revocation, each with its own reason. Returns the payload."""
    if document.get("format") != FORMAT:
        raise LicenseError("bad-format", f"not a hpi-triton certificate (format "
                                         f"{document.get('format')!r}; expected {FORMAT!r})")
    payload = verify_signature(public_key, document)
    serial = payload.get("serial", "?")
    if payload.get("pipeline") != pipeline:
        raise LicenseError("other-pipeline", f"certificate {serial} is for pipeline "
                                             f"{payload.get('pipeline')!r}, not {pipeline!r}")
    if payload.get("fingerprint") != fingerprint:
        raise LicenseError("other-device", f"certificate {serial} is bound to another device "
                                           f"(fingerprint {str(payload.get('fingerprint'))[:12]}…, "
                                           f"this one is {fingerprint[:12]}…)")
    expires = payload.get("expires")
    if expires and today() > expires:
        raise LicenseError("expired", f"certificate {serial} expired on {expires}")
    if serial in set(revoked):
        raise LicenseError("revoked", f"serial {serial} has been revoked by the issuer")
    return payload


def license_dir() -> str:
    """Where certificates are looked for: ``HPI_TRITON_LICENSE_DIR`` or ~/.hpi-triton/licenses."""
    return os.environ.get("HPI_TRITON_LICENSE_DIR") or os.path.join(
        os.path.expanduser("~"), ".hpi-triton", "licenses")


def load_documents(folder: Optional[str] = None) -> List[Dict]:
    """Every readable JSON document in the licenses folder (``*.lic`` and ``*.json``)."""
    folder = folder or license_dir()
    out = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if not name.endswith((".lic", ".json")):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                document = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(document, dict):
            document["_file"] = name
            out.append(document)
    return out


def revoked_serials(documents: List[Dict], public_key) -> List[str]:
    """Serials of every revocation list in ``documents`` that the issuer signed."""
    serials: List[str] = []
    for document in documents:
        if document.get("format") != REVOCATIONS_FORMAT:
            continue
        try:
            serials += list(verify_signature(public_key, document, "revocation list")
                            .get("serials", []))
        except LicenseError:
            continue
    return serials


def find_certificate(pipeline: str, public_key, fingerprint: str,
                     folder: Optional[str] = None) -> Dict:
    """The valid certificate for ``pipeline`` in the licenses folder; otherwise the most
    specific reason none is valid (LicenseError)."""
    folder = folder or license_dir()
    documents = load_documents(folder)
    revoked = revoked_serials(documents, public_key)
    failures = []
    for document in documents:
        if document.get("format") != FORMAT:
            continue
        try:
            payload = check_certificate(document, public_key, pipeline, fingerprint, revoked)
            return {"payload": payload, "file": document["_file"]}
        except LicenseError as exc:
            failures.append(exc)
    if not failures:
        raise LicenseError("missing", f"no certificate for pipeline {pipeline!r} in {folder}: "
                                      f"activate a serial (hpi-triton license activate) or put "
                                      f"the issuer's cert.lic there")
    # The failure closest to valid says most: a right-pipeline one over an other-pipeline one.
    order = ["revoked", "expired", "other-device", "other-pipeline", "bad-signature",
             "bad-format"]
    failures.sort(key=lambda e: order.index(e.reason) if e.reason in order else len(order))
    raise failures[0]
