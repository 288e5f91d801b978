"""Engine artifacts encrypted at rest, unlocked by a certificate.

Each pipeline has a content keypair (X25519): the issuer derives the private key from its
secret seed (``content_private_key``); ``public.pem`` carries every pipeline's public key. A
licensed build draws an ephemeral X25519 key, derives the repository's AES-256-GCM key from
ECDH(ephemeral, pipeline public key) and encrypts every engine file with it, keeping only the
ephemeral public key (``license.json`` in the model's version folder). A serving machine gets
the pipeline's content private key from its certificate (sealed to its fingerprint) and
derives the same AES key — in memory only.

Shipped in licensed repositories' runtime package: needs ``cryptography`` only.
"""

from __future__ import annotations

import os
from typing import Dict

from .certificate import b64, unb64

ENCRYPTED_SUFFIX = ".enc"


def _hkdf(secret: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def content_private_bytes(seed: bytes, pipeline: str) -> bytes:
    """The pipeline's content private key (raw X25519 bytes) from the issuer's seed."""
    return _hkdf(seed, b"hpi-triton content key " + pipeline.encode())


def content_public_bytes(private_bytes: bytes) -> bytes:
    """The X25519 public key (raw bytes) of a pipeline's content private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return X25519PrivateKey.from_private_bytes(private_bytes).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def new_repository_key(pipeline_public: bytes):
    """(AES key, ephemeral public key) for a new licensed build."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(pipeline_public))
    public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _hkdf(shared, b"hpi-triton repository key"), public


def repository_key(pipeline_private: bytes, ephemeral_public: bytes) -> bytes:
    """The AES key of a licensed build, from the pipeline's content private key."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )

    shared = X25519PrivateKey.from_private_bytes(pipeline_private).exchange(
        X25519PublicKey.from_public_bytes(ephemeral_public))
    return _hkdf(shared, b"hpi-triton repository key")


def encrypt_file(path: str, key: bytes) -> str:
    """Replace ``path`` by ``path.enc`` (nonce + AES-GCM ciphertext; the file name is the
    associated data, so files cannot be swapped). Returns the new path."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with open(path, "rb") as handle:
        data = handle.read()
    nonce = os.urandom(12)
    target = path + ENCRYPTED_SUFFIX
    with open(target, "wb") as handle:
        handle.write(nonce + AESGCM(key).encrypt(nonce, data, os.path.basename(path).encode()))
    os.remove(path)
    return target


def decrypt_files(folder: str, key: bytes) -> Dict[str, bytes]:
    """Every ``*.enc`` file of ``folder`` decrypted in memory: original name → bytes."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(ENCRYPTED_SUFFIX):
            continue
        plain_name = name[:-len(ENCRYPTED_SUFFIX)]
        with open(os.path.join(folder, name), "rb") as handle:
            data = handle.read()
        try:
            out[plain_name] = AESGCM(key).decrypt(data[:12], data[12:], plain_name.encode())
        except InvalidTag:
            raise ValueError(f"{name}: does not decrypt with this certificate's key (the file "
                             f"was altered, or the certificate is for other builds)") from None
    return out


__all__ = ["b64", "unb64", "content_private_bytes", "content_public_bytes",
           "new_repository_key", "repository_key", "encrypt_file", "decrypt_files"]
