"""Write the model store: manifests with every file's sha256, the index, and its ed25519 signature.

The store is assembled beside its destination and swapped in only when
complete, so a failed build never leaves a half store or loses the old one.
"""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.store.manifest import (
    INDEX_FILE,
    MANIFEST_FILE,
    SIGNATURE_FILE,
    FileEntry,
    IndexEntry,
    Manifest,
    StoreIndex,
    canonical_json,
    sha256_file,
)
from appliance.store.signing import key_id, sign


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def file_entries(model_dir: Path) -> list[FileEntry]:
    return [
        FileEntry(path=p.relative_to(model_dir).as_posix(), sha256=sha256_file(p), size=p.stat().st_size)
        for p in sorted(model_dir.rglob("*"))
        if p.is_file() and p.name != MANIFEST_FILE
    ]


def write_manifest(model_dir: Path, manifest: Manifest) -> str:
    data = canonical_json(manifest)
    (model_dir / MANIFEST_FILE).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def write_index(staging: Path, box: str, sku: str, manifests: list[tuple[Manifest, str]],
                key: Ed25519PrivateKey) -> StoreIndex:
    index = StoreIndex(
        box=box, sku=sku, built_at=now_iso(), signing_key_id=key_id(key.public_key()),
        models=[IndexEntry(id=m.model_id, task=m.task, manifest_sha256=digest) for m, digest in manifests],
    )
    data = canonical_json(index)
    (staging / INDEX_FILE).write_bytes(data)
    (staging / SIGNATURE_FILE).write_bytes(sign(key, data))
    return index


def staging_dir(out: Path) -> Path:
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def swap_in(staging: Path, out: Path) -> None:
    old = out.with_name(out.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)
