"""Verify a model store: signature, manifests, every file's sha256, and the SKU.

The first fault found is raised as a StoreError naming the model and file.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from appliance.errors import StoreError
from appliance.sku.detect import Fingerprint, mismatches
from appliance.sku.profiles import load_profile
from appliance.store.manifest import (
    INDEX_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    FileEntry,
    Manifest,
    StoreIndex,
    sha256_file,
)
from appliance.store.signing import load_public_key, trusted_key_path, verify_signature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifiedModel:
    manifest: Manifest
    path: Path


@dataclass(frozen=True)
class VerifiedStore:
    root: Path
    index: StoreIndex
    models: dict[str, VerifiedModel]
    trusted_key: Path
    dev_key: bool


def file_fault(model_dir: Path, entry: FileEntry, model_id: str) -> str | None:
    """Why one listed file no longer matches its manifest entry, or None."""
    path = model_dir / entry.path
    if not path.is_file():
        return f"model {model_id}: file {entry.path} is missing; reinstall the store"
    if path.stat().st_size != entry.size:
        return f"model {model_id}: file {entry.path} changed size since build; reinstall the store"
    if sha256_file(path) != entry.sha256:
        return f"model {model_id}: file {entry.path} changed on disk since build (sha256 differs); reinstall the store"
    return None


def _read_manifest(root: Path, entry_id: str, expected_sha: str) -> tuple[Manifest, Path]:
    model_dir = root / entry_id
    mpath = model_dir / MANIFEST_FILE
    if not mpath.is_file():
        raise StoreError(f"model {entry_id}: {mpath} is missing; reinstall the store")
    raw = mpath.read_bytes()
    if hashlib.sha256(raw).hexdigest() != expected_sha:
        raise StoreError(f"model {entry_id}: {MANIFEST_FILE} changed since signing; reinstall the store")
    try:
        return Manifest.model_validate_json(raw), model_dir
    except ValidationError as exc:
        raise StoreError(f"model {entry_id}: {MANIFEST_FILE} is not a valid manifest ({exc.errors()[0]['msg']})") from None


def verify_store(
    root: Path,
    trusted_key: Path | None = None,
    host: Fingerprint | None = None,
    check_hashes: bool = True,
) -> VerifiedStore:
    """Verify everything the box needs before it serves; ``host=None`` skips the hardware match."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"{root}: no model store here; build one with `appliance build models` or pass --store")
    index_path, sig_path = root / INDEX_FILE, root / SIGNATURE_FILE
    for p in (index_path, sig_path):
        if not p.is_file():
            raise StoreError(f"{p}: missing; the store is incomplete or unsigned, and the box refuses it")
    key_path, dev = trusted_key_path(trusted_key)
    if dev:
        log.warning("trusting the DEVELOPMENT signing key %s; a shipped box trusts only the vendor key", key_path)
    index_bytes = index_path.read_bytes()
    verify_signature(load_public_key(key_path), index_bytes, sig_path.read_bytes(), str(sig_path))
    try:
        index = StoreIndex.model_validate(json.loads(index_bytes))
    except (ValidationError, ValueError) as exc:
        raise StoreError(f"{index_path}: not a valid store index ({exc})") from None

    profile = load_profile(index.sku)
    if host is not None:
        reasons = mismatches(profile, host)
        if reasons:
            raise StoreError(
                f"{root}: engines were built for SKU {index.sku}, and this host does not match it "
                f"({'; '.join(reasons)}); install the store built for this box's SKU"
            )

    models: dict[str, VerifiedModel] = {}
    for entry in index.models:
        manifest, model_dir = _read_manifest(root, entry.id, entry.manifest_sha256)
        if manifest.sku != index.sku or manifest.model_id != entry.id:
            raise StoreError(
                f"model {entry.id}: manifest is for SKU {manifest.sku} / model {manifest.model_id}, "
                f"the store is {index.sku}; this engine is foreign to the store: reinstall it"
            )
        listed = {f.path for f in manifest.files} | {MANIFEST_FILE}
        for present in sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()):
            if present not in listed:
                raise StoreError(f"model {entry.id}: unexpected file {present} not in the manifest; remove it or reinstall")
        for f in manifest.files:
            fault = file_fault(model_dir, f, entry.id) if check_hashes else (
                None if (model_dir / f.path).is_file() else f"model {entry.id}: file {f.path} is missing; reinstall the store"
            )
            if fault:
                raise StoreError(fault)
        models[entry.id] = VerifiedModel(manifest, model_dir)
    return VerifiedStore(root, index, models, key_path, dev)
