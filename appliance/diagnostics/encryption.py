"""age encryption to the vendor's X25519 key (pyrage): keys, encrypt and decrypt files by streaming.

age encrypts in 64 KiB chunks (its STREAM construction), so a bundle of any
size passes through in constant memory and a cut or altered chunk is refused.
Why age and not a NaCl sealed box: docs/diagnostics.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyrage
from pyrage import x25519

from appliance.errors import ApplianceError

PUBLIC_PREFIX = "age1"
SECRET_PREFIX = "AGE-SECRET-KEY-1"


class KeyFileError(ApplianceError):
    """A vendor key file that is missing or not an age key; the message names the file and the fix."""


def keygen(prefix: Path) -> tuple[Path, Path]:
    """PREFIX.key (0600, the vendor keeps it) and PREFIX.pub (installed on boxes under /etc/appliance/)."""
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (key_path, pub_path):
        if path.exists():
            raise KeyFileError(f"{path} already exists; choose another --out PREFIX or move the old pair away")
    key_path.parent.mkdir(parents=True, exist_ok=True)
    identity = x25519.Identity.generate()
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"# appliance vendor diagnostics key: opens bundles encrypted to {identity.to_public()}\n"
                 f"{identity}\n")
    pub_path.write_text(f"{identity.to_public()}\n")
    return key_path, pub_path


def _key_line(path: Path, prefix: str, what: str, fix: str) -> str:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no {what} here; {fix}") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the {what} ({exc.strerror}); {fix}") from None
    line = next((ln.strip() for ln in lines if ln.strip().startswith(prefix)), None)
    if line is None:
        raise KeyFileError(f"{path} is not an age {what} (no line starting {prefix}); {fix}")
    return line


def load_recipient(path: Path) -> x25519.Recipient:
    fix = "install the vendor's diagnostics key there or pass --vendor-key PUB (made by `appliance diagnostics keygen`)"
    line = _key_line(path, PUBLIC_PREFIX, "public key", fix)
    try:
        return x25519.Recipient.from_str(line)
    except Exception:
        raise KeyFileError(f"{path}: the public key is damaged; {fix}") from None


def load_identity(path: Path) -> x25519.Identity:
    fix = "pass the PREFIX.key that `appliance diagnostics keygen` wrote"
    line = _key_line(path, SECRET_PREFIX, "private key", fix)
    try:
        return x25519.Identity.from_str(line)
    except Exception:
        raise KeyFileError(f"{path}: the private key is damaged; {fix}") from None


def encrypt_file(plain: Path, out: Path, recipient: x25519.Recipient) -> None:
    tmp = out.with_name(out.name + ".part")
    pyrage.encrypt_file(str(plain), str(tmp), [recipient])
    os.replace(tmp, out)


def decrypt_file(sealed: Path, out: Path, identity: x25519.Identity, key_path: Path) -> None:
    try:
        pyrage.decrypt_file(str(sealed), str(out), [identity])
    except pyrage.DecryptError:
        out.unlink(missing_ok=True)
        raise ApplianceError(f"{sealed} cannot be opened with {key_path}: it was encrypted to another key, or it is "
                             "damaged; use the vendor key whose .pub the box has") from None
