"""The update bundle: an uncompressed tar that streams, ``manifest.json`` and its ed25519 signature first, then the
root image, kernel and initrd in the manifest's order.

Reading it is two passes over the same bytes: the first checks the signature and every file's size and sha256
before anything is written, the second hands the files to whoever writes them and hashes them again on the way, so
a bundle that changes between the passes is caught too. It may be a file or a block device (a USB stick).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from appliance.errors import UpdateError
from appliance.store.signing import key_id
from appliance.update.manifest import BundleFile, UpdateManifest

MANIFEST, SIGNATURE = "manifest.json", "manifest.json.sig"
CHUNK = 1 << 20
Progress = Callable[[int], None]


def write(out: Path, manifest: UpdateManifest, files: dict[str, Path], key: Ed25519PrivateKey) -> Path:
    """Sign the manifest and write the bundle, with fixed owners and times so that rebuilds match."""
    data = manifest.model_dump_json(indent=2).encode() + b"\n"
    tmp = out.with_name(out.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in ((MANIFEST, data), (SIGNATURE, key.sign(data))):
            tar.addfile(_info(name, len(payload), manifest.created), io.BytesIO(payload))
        for f in manifest.files:
            with files[f.name].open("rb") as fh:
                tar.addfile(_info(f.name, f.size, manifest.created), fh)
    tmp.replace(out)
    return out


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, 0o644
    return info


def describe(path: Path, name: str) -> BundleFile:
    h, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
            size += len(block)
    return BundleFile(name=name, size=size, sha256=h.hexdigest())


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r|")
    except FileNotFoundError:
        raise UpdateError(f"{path}: no such bundle") from None
    except (tarfile.TarError, OSError) as exc:
        raise UpdateError(f"{path}: not an update bundle ({exc}); build one with `appliance build update`") from None


def _manifest(path: Path, tar: tarfile.TarFile, trusted: Ed25519PublicKey) -> UpdateManifest:
    members = []
    for expected in (MANIFEST, SIGNATURE):
        member = tar.next()
        if member is None or member.name != expected or not member.isfile() or member.size > 1 << 16:
            raise UpdateError(f"{path}: does not start with {MANIFEST} and {SIGNATURE}; not an update bundle")
        members.append(tar.extractfile(member).read())
    data, signature = members
    try:
        trusted.verify(signature, data)
    except InvalidSignature:
        raise UpdateError(f"{path}: signature does not match under the trusted vendor key {key_id(trusted)}; the "
                          "bundle was changed after signing or signed by someone else: get it again from the vendor"
                          ) from None
    try:
        return UpdateManifest.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UpdateError(f"{path}: signed manifest is not one this box reads ({'.'.join(map(str, err['loc']))}: "
                          f"{err['msg']}); it needs a newer updater") from None


def read_manifest(path: Path, trusted: Ed25519PublicKey) -> UpdateManifest:
    """The signed manifest alone (the first few KiB), for the checks that need no payload."""
    with _open(path) as tar:
        return _manifest(path, tar, trusted)


def files(path: Path, trusted: Ed25519PublicKey, manifest: UpdateManifest,
          progress: Progress | None = None) -> Iterator[tuple[BundleFile, IO[bytes]]]:
    """Each file with a reader that hashes as it goes and raises at its end if the bytes are not the signed ones."""
    with _open(path) as tar:
        if _manifest(path, tar, trusted) != manifest:
            raise UpdateError(f"{path}: its manifest changed while it was being read; copy the bundle again")
        for f in manifest.files:
            member = tar.next()
            if member is None or member.name != f.name or not member.isfile():
                found = "the end" if member is None else repr(member.name)
                raise UpdateError(f"{path}: expected {f.name} next, found {found}; the bundle is incomplete or "
                                  "out of order: get it again from the vendor")
            if member.size != f.size:
                raise UpdateError(f"{path}: {f.name} is {member.size} bytes, the signed manifest says {f.size}; "
                                  "get the bundle again from the vendor")
            reader = _Checked(path, f, tar.extractfile(member), progress)
            yield f, reader
            reader.finish()
        if tar.next() is not None:
            raise UpdateError(f"{path}: has files after those the manifest names; get it again from the vendor")


def verify(path: Path, trusted: Ed25519PublicKey, progress: Progress | None = None) -> UpdateManifest:
    """The first pass: signature, then every file's size and digest. Nothing is written."""
    manifest = read_manifest(path, trusted)
    for _, reader in files(path, trusted, manifest, progress):
        while reader.read(CHUNK):
            pass
    return manifest


class _Checked(io.RawIOBase):
    def __init__(self, bundle: Path, f: BundleFile, raw: IO[bytes], progress: Progress | None):
        self.bundle, self.f, self.raw, self.progress = bundle, f, raw, progress
        self.hash, self.seen = hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            block = self.raw.read(size)
        except (tarfile.TarError, OSError) as exc:
            raise UpdateError(f"{self.bundle}: {self.f.name} cannot be read ({exc}); the bundle is incomplete or "
                              "damaged: get it again from the vendor") from None
        self.hash.update(block)
        self.seen += len(block)
        if self.progress and block:
            self.progress(len(block))
        return block

    def finish(self) -> None:
        while self.seen < self.f.size and self.read(CHUNK):
            pass
        if self.seen != self.f.size or self.hash.hexdigest() != self.f.sha256:
            raise UpdateError(f"{self.bundle}: {self.f.name} does not match its sha256 in the signed manifest; the "
                              "bundle is damaged or was changed: get it again from the vendor")
