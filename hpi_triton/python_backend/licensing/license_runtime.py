"""What a licensed repository runs inside tritonserver: the certificate check and the
in-memory unlocking of encrypted engine artifacts.

A licensed model's version folder holds ``license.json`` (the pipeline, the issuer's
Ed25519 public key, the build's ephemeral X25519 public key, the gate model's name). Copied
into repositories with certificate.py, content.py and fingerprint.py; needs ``cryptography``.
"""

import json
import os

from . import certificate, content, fingerprint

LicenseError = certificate.LicenseError
LICENSE_FILE = "license.json"


class LicenseCheck:
    """The certificate check for one licensed model; re-reads the licenses folder on every
    call, so activating (or revoking) takes effect without a restart."""

    def __init__(self, version_dir):
        from cryptography.hazmat.primitives import serialization

        self.version_dir = version_dir
        with open(os.path.join(version_dir, LICENSE_FILE), encoding="utf-8") as handle:
            self.info = json.load(handle)
        self.pipeline = self.info["pipeline"]
        self.public_key = serialization.load_pem_public_key(self.info["issuer"].encode())
        self._fingerprint = None

    @property
    def fingerprint(self):
        """This device's fingerprint, computed on first use.

        Raises:
            LicenseError: ``no-fingerprint`` when the device cannot be fingerprinted.
        """
        if self._fingerprint is None:
            try:
                self._fingerprint = fingerprint.device_fingerprint()
            except fingerprint.FingerprintError as exc:
                raise LicenseError("no-fingerprint", str(exc)) from None
        return self._fingerprint

    def check(self):
        """The valid certificate's payload, or LicenseError saying why there is none."""
        return certificate.find_certificate(self.pipeline, self.public_key,
                                            self.fingerprint)["payload"]

    def unlock(self):
        """The model's artifact files decrypted in memory (name → bytes)."""
        payload = self.check()
        pipeline_key = certificate.open_for_device(payload["content_key"], self.fingerprint,
                                                   payload["serial"])
        key = content.repository_key(pipeline_key,
                                     certificate.unb64(self.info["ephemeral_public"]))
        try:
            return content.decrypt_files(self.version_dir, key)
        except ValueError as exc:
            raise LicenseError("bad-artifact", str(exc)) from None
