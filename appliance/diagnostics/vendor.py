"""The vendor's side: decrypt a bundle with the private key, unpack it, and summarise what it shows.

The summary is what a support engineer reads first: the box's state and the
checks that fail, restarts and their causes, versions, collectors that did
not finish.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
from pathlib import Path

from pydantic import BaseModel

from appliance.diagnostics.bundle import FILES_DIR, INDEX_FILE, BundleIndex, CollectorRecord
from appliance.diagnostics.encryption import decrypt_file, load_identity
from appliance.errors import ApplianceError

SUMMARY_FILE = "summary.json"


class CheckLine(BaseModel):
    name: str
    status: str
    reason: str


class RestartLine(BaseModel):
    at: float
    reason: str


class BundleSummary(BaseModel):
    bundle: str
    box: str
    created_at: str
    box_status: str
    box_reason: str
    failing_checks: list[CheckLine]
    restart_count: int
    recent_restarts: list[RestartLine]
    appliance_version: str
    os: str | None
    kernel: str | None
    store_sku: str | None
    host_matches_sku: bool | None
    incomplete_collectors: list[CollectorRecord]
    files: int
    bytes: int


def open_bundle(sealed: Path, key: Path, out: Path) -> tuple[BundleSummary, Path]:
    """Decrypt and unpack into ``out``; returns the summary and the bundle's folder (summary.json written there)."""
    identity = load_identity(key)
    if not sealed.is_file():
        raise ApplianceError(f"{sealed}: no such bundle; pass the .tar.gz.age file the box released")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        plain = Path(tmp) / "bundle.tar.gz"
        decrypt_file(sealed, plain, identity, key)
        with tarfile.open(plain, "r:gz") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/")[0] for m in members}
            if len(tops) != 1:
                raise ApplianceError(f"{sealed}: not a diagnostics bundle (expected one top folder, found {len(tops)})")
            tar.extractall(out, filter="data")
    root = out / tops.pop()
    summary = summarise(root)
    (root / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2))
    return summary, root


def _json(root: Path, rel: str) -> dict | list | None:
    path = root / FILES_DIR / rel
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def summarise(root: Path) -> BundleSummary:
    index = BundleIndex.model_validate_json((root / INDEX_FILE).read_text())
    health = _json(root, "health_record/health.json") or {}
    restarts = _json(root, "health_record/restarts.json") or []
    os_kernel = _json(root, "os_kernel/os-kernel.json") or {}
    sku = _json(root, "sku_fingerprint/sku.json") or {}
    box = health.get("box", {})
    osr = os_kernel.get("os_release") or {}
    kernel = os_kernel.get("kernel") or {}
    mismatches = sku.get("host_mismatches")
    return BundleSummary(
        bundle=index.id, box=index.box, created_at=index.created_at,
        box_status=box.get("status", "unknown"), box_reason=box.get("reason", "no health record in the bundle"),
        failing_checks=[CheckLine(name=c["name"], status=c["status"], reason=c["reason"])
                        for c in health.get("checks", []) if c.get("status") != "ok"],
        restart_count=(health.get("restarts") or {}).get("count", len(restarts)),
        recent_restarts=[RestartLine(at=r["at"], reason=r["reason"]) for r in restarts[:5]],
        appliance_version=index.appliance_version,
        os=osr.get("PRETTY_NAME"), kernel=kernel.get("release"),
        store_sku=sku.get("store_sku"), host_matches_sku=None if mismatches is None else not mismatches,
        incomplete_collectors=index.failed(), files=len(index.files), bytes=index.total_size)
