"""Ed25519 keys: generation, keyids, files (private keys 0600, optionally encrypted)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from schemas import PublicKey, canonical_bytes

__all__ = [
    "KeyFileError",
    "SigningKey",
    "keyid_of",
    "load_public_key",
    "load_signing_key",
    "private_key_pem",
    "public_key_from_wire",
    "save_signing_key",
    "signing_key_from_pem",
    "verify_signature",
]


class KeyFileError(ValueError):
    """A key file is missing, unreadable, of the wrong kind or needs another passphrase."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keyid_of(public: PublicKey) -> str:
    """sha256 of the raw 32-byte public key, hex."""
    return public.keyid


def public_key_from_wire(public: PublicKey) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(public.public))


def verify_signature(public: PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key_from_wire(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public(self) -> PublicKey:
        return PublicKey(public=_raw_public(self.private.public_key()).hex())

    @property
    def keyid(self) -> str:
        return keyid_of(self.public)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)


def save_signing_key(key: SigningKey, path: Path, *, passphrase: bytes | None = None) -> Path:
    """Write the private key (PKCS#8 PEM, mode 0600) and ``<path>.pub`` beside it.

    The private file is created 0600 from the start, never chmod-ed after the fact, and
    an existing file is never overwritten.
    """
    pem = private_key_pem(key, passphrase=passphrase)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path = path.with_name(path.name + ".pub")
    public_path.write_bytes(canonical_bytes(key.public.model_dump(mode="json")) + b"\n")
    return public_path


def private_key_pem(key: SigningKey, *, passphrase: bytes | None = None) -> bytes:
    """The private key as PKCS#8 PEM, encrypted with ``passphrase`` if given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def signing_key_from_pem(
    data: bytes, *, passphrase: bytes | None = None, source: str = "the key"
) -> SigningKey:
    try:
        private = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        hint = "is encrypted; give its passphrase" if passphrase is None else "is not encrypted"
        raise KeyFileError(f"{source} {hint}") from exc
    except ValueError as exc:
        raise KeyFileError(f"{source}: wrong passphrase or not a PEM private key") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{source} is not an Ed25519 key")
    return SigningKey(private)


def load_signing_key(path: Path, *, passphrase: bytes | None = None) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from exc
    return signing_key_from_pem(data, passphrase=passphrase, source=str(path))


def load_public_key(path: Path) -> PublicKey:
    """Read a ``.pub`` file written by ``save_signing_key`` (or a private key's public half)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from exc
    if data.startswith(b"-----BEGIN"):
        raise KeyFileError(f"{path} is a PEM file; pass the .pub file written beside it")
    try:
        return PublicKey.model_validate_json(data, strict=True)
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a tinyfleet public key file") from exc
