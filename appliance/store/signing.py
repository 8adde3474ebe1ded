"""Ed25519 signing of the store index; the box trusts only the vendor key it was built with."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.errors import ApplianceError, StoreError

log = logging.getLogger(__name__)

SYSTEM_TRUSTED_KEY = Path("/etc/appliance/vendor.pub")


def dev_key_dir() -> Path:
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "appliance"


def dev_private_key_path() -> Path:
    return dev_key_dir() / "dev-signing.key"


def dev_public_key_path() -> Path:
    return dev_key_dir() / "dev-signing.pub"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def write_keypair(private_path: Path, public_path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise ApplianceError(f"{path}: signing key not found; pass --signing-key with the vendor's ed25519 key") from None
    except (ValueError, TypeError) as exc:
        raise ApplianceError(f"{path}: not an unencrypted PEM private key ({exc}); export it with PKCS8 PEM") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ApplianceError(f"{path}: is not an ed25519 key; the store is signed with ed25519 only")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise StoreError(f"{path}: trusted public key not found; pass --trusted-key with the vendor's key") from None
    except ValueError as exc:
        raise StoreError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise StoreError(f"{path}: is not an ed25519 public key")
    return key


def signing_key_for_build(path: Path | None) -> tuple[Ed25519PrivateKey, bool]:
    """The vendor key, or (with a loud warning) a development key made once per machine."""
    if path is not None:
        return load_private_key(path), False
    dev = dev_private_key_path()
    if dev.is_file():
        return load_private_key(dev), True
    return write_keypair(dev, dev_public_key_path()), True


def trusted_key_path(explicit: Path | None) -> tuple[Path, bool]:
    """Which public key the box trusts: explicit, the image's vendor key, or the dev key (flagged)."""
    if explicit is not None:
        return explicit, False
    if SYSTEM_TRUSTED_KEY.is_file():
        return SYSTEM_TRUSTED_KEY, False
    if dev_public_key_path().is_file():
        return dev_public_key_path(), True
    raise StoreError(
        f"no trusted key: {SYSTEM_TRUSTED_KEY} is missing and no development key exists; "
        "pass --trusted-key with the vendor's public key"
    )


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify_signature(public: Ed25519PublicKey, data: bytes, signature: bytes, where: str) -> None:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        raise StoreError(
            f"{where}: signature does not match index.json under the trusted key {key_id(public)}; "
            "the store was changed after signing or signed by someone else: reinstall it from the vendor"
        ) from None
