"""The admin's side: list staged bundles, read any file in one, then release (encrypt) or discard it.

Released bundles are ``RELEASED_DIR/<id>.tar.gz.age``; the plain staged copy
is removed on release, so what stays on the box is the encrypted file, its
index and the redaction map.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

from appliance.diagnostics.bundle import FILES_DIR, INDEX_FILE, SUFFIX, BundleIndex, BundleState
from appliance.diagnostics.collect import STAGED_DIR, staged_dir
from appliance.diagnostics.encryption import encrypt_file, load_recipient
from appliance.errors import ApplianceError
from appliance.settings import BoxSettings

RELEASED_DIR = "released"
MAX_READ = 2 * 1024 * 1024


class BundleNotFound(ApplianceError):
    exit_code = 2


def released_path(settings: BoxSettings, bundle_id: str) -> Path:
    return settings.diagnostics_dir / RELEASED_DIR / f"{bundle_id}{SUFFIX}"


def _checked_id(bundle_id: str) -> str:
    if not bundle_id.startswith("diag-") or "/" in bundle_id or ".." in bundle_id:
        raise BundleNotFound(f"{bundle_id!r} is not a bundle id; list them in the console or with --review")
    return bundle_id


def load_index(settings: BoxSettings, bundle_id: str) -> tuple[BundleIndex, BundleState]:
    bundle_id = _checked_id(bundle_id)
    for path, state in ((staged_dir(settings, bundle_id) / INDEX_FILE, BundleState.STAGED),
                        (released_path(settings, bundle_id).with_name(f"{bundle_id}.index.json"), BundleState.RELEASED)):
        if path.is_file():
            return BundleIndex.model_validate_json(path.read_text()), state
    raise BundleNotFound(f"no bundle {bundle_id} under {settings.diagnostics_dir}; collect one first")


def list_bundles(settings: BoxSettings) -> list[tuple[BundleIndex, BundleState]]:
    found = []
    for path in sorted((settings.diagnostics_dir / STAGED_DIR).glob(f"*/{INDEX_FILE}")):
        found.append((BundleIndex.model_validate_json(path.read_text()), BundleState.STAGED))
    for path in sorted((settings.diagnostics_dir / RELEASED_DIR).glob("*.index.json")):
        found.append((BundleIndex.model_validate_json(path.read_text()), BundleState.RELEASED))
    return sorted(found, key=lambda f: f[0].created_at, reverse=True)


def read_file(settings: BoxSettings, bundle_id: str, rel: str) -> str:
    """One staged file's text, for the admin to read before release; only files the index lists."""
    index, state = load_index(settings, bundle_id)
    if state is not BundleState.STAGED:
        raise BundleNotFound(f"bundle {bundle_id} is already released; its plain copy is gone from the box")
    if rel not in {f.path for f in index.files}:
        raise BundleNotFound(f"bundle {bundle_id} has no file {rel!r}")
    data = (staged_dir(settings, bundle_id) / FILES_DIR / rel).read_bytes()
    text = data[:MAX_READ].decode(errors="replace")
    return text + (f"\n... ({len(data) - MAX_READ} more bytes)" if len(data) > MAX_READ else "")


def release(settings: BoxSettings, bundle_id: str, vendor_key: Path | None = None, out: Path | None = None) -> Path:
    """Tar, compress and encrypt a staged bundle to the vendor key; the plain copy is removed afterwards."""
    index, state = load_index(settings, bundle_id)
    if state is not BundleState.STAGED:
        raise BundleNotFound(f"bundle {bundle_id} was already released as {released_path(settings, bundle_id)}")
    key_path = vendor_key or settings.vendor_key
    recipient = load_recipient(key_path)
    root = staged_dir(settings, bundle_id)
    target = released_path(settings, bundle_id)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    plain = root.with_name(bundle_id + ".tar.gz")
    with tarfile.open(plain, "w:gz") as tar:
        tar.add(root / INDEX_FILE, arcname=f"{bundle_id}/{INDEX_FILE}", filter=_anonymous)
        for entry in index.files:
            tar.add(root / FILES_DIR / entry.path, arcname=f"{bundle_id}/{FILES_DIR}/{entry.path}", filter=_anonymous)
    try:
        encrypt_file(plain, target, recipient)
    finally:
        plain.unlink(missing_ok=True)
    shutil.copyfile(root / INDEX_FILE, target.with_name(f"{bundle_id}.index.json"))
    shutil.rmtree(root)
    if out is not None:
        out = out / target.name if out.is_dir() else out
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, out)
        os.chmod(out, 0o644)
        return out
    return target


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or ids of the box's accounts in the tar headers."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644 if info.isfile() else 0o755
    return info


def discard(settings: BoxSettings, bundle_id: str) -> None:
    _, state = load_index(settings, bundle_id)
    if state is BundleState.STAGED:
        shutil.rmtree(staged_dir(settings, bundle_id))
