"""``appliance build update``: a signed bundle for the other root slot, made from a disk image built from the spec
(or one already built), so that what an update installs is byte for byte what a new box ships with."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from rich.console import Console
from rich.table import Table

from appliance.errors import UpdateError
from appliance.factory.image.build import REPORT, RAW, build_image, default_cache
from appliance.factory.image.report import BuildReport
from appliance.spec import ApplianceSpec
from appliance.store.signing import signing_key_for_build
from appliance.update import bundle
from appliance.update.manifest import STATE_SCHEMA, UpdateManifest


def build_update(spec: ApplianceSpec, out: Path, *, image: Path | None = None, store: Path | None = None,
                 signing_key: Path | None = None, version: str | None = None, min_version: str = "0",
                 cache: Path | None = None, console: Console | None = None) -> UpdateManifest:
    console = console or Console(stderr=True)
    t0 = time.monotonic()
    cache = cache or default_cache()
    key, dev = signing_key_for_build(signing_key)
    work = Path(tempfile.mkdtemp(prefix="update-", dir=cache.parent if cache.parent.is_dir() else None))
    try:
        if image is None:
            image = work / "image"
            build_image(spec, image, store, signing_key, cache=cache, version=version, console=console)
        report = _report(image)
        if (report.sku, report.box_name) != (spec.box.sku, spec.box.name):
            raise UpdateError(f"{image}: built for {report.box_name} on {report.sku}, the spec says {spec.box.name} "
                              f"on {spec.box.sku}; build the image from this spec")
        if version and version != report.version:
            raise UpdateError(f"{image}: is version {report.version}, not {version}; rebuild it with --version "
                              f"{version} (the version is inside the root it carries)")
        root = _root_image(image, report, work / "root.squashfs")
        _check_trust(root, key)
        files = {"root.squashfs": root, "vmlinuz": image / "vmlinuz", "initrd.img": image / "initrd.img"}
        manifest = UpdateManifest(version=report.version, min_version=min_version, box_name=report.box_name,
                                  sku=report.sku, store_digest=report.store_digest, state_schema=STATE_SCHEMA,
                                  created=report.source_date_epoch,
                                  files=[bundle.describe(path, name) for name, path in files.items()])
        out.parent.mkdir(parents=True, exist_ok=True)
        bundle.write(out, manifest, files, key)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if dev:
        console.print("[bold yellow]WARNING: signed with the DEVELOPMENT key; only boxes built with it accept it.[/]")
    table = Table(title=f"Update bundle {out} ({time.monotonic() - t0:.0f} s)")
    for col in ("file", "size", "sha256"):
        table.add_column(col)
    for f in manifest.files:
        table.add_row(f.name, f"{f.size / 2**20:.1f} MiB", f.sha256[:16])
    table.add_row("bundle", f"{out.stat().st_size / 2**20:.1f} MiB", f"version {manifest.version}, applies on "
                  f">= {manifest.min_version}, SKU {manifest.sku}")
    console.print(table)
    return manifest


def _report(image: Path) -> BuildReport:
    try:
        return BuildReport.model_validate_json((image / REPORT).read_text())
    except FileNotFoundError:
        raise UpdateError(f"{image}: no {REPORT}; pass a directory made by `appliance build image`") from None


def _root_image(image: Path, report: BuildReport, out: Path) -> Path:
    """Slot A's squashfs, cut from the raw disk at its partition's offset (the partition is padded beyond it)."""
    part = next(p for p in report.partitions if p.label == "root-a")
    with (image / RAW).open("rb") as src, out.open("wb") as dst:
        src.seek(part.offset)
        remaining = report.root_squashfs_bytes
        while remaining:
            block = src.read(min(remaining, bundle.CHUNK))
            if not block:
                raise UpdateError(f"{image / RAW}: ends inside slot A; the image is truncated, rebuild it")
            dst.write(block)
            remaining -= len(block)
    return out


def _check_trust(root: Path, key) -> None:
    """The root's vendor.pub must be the signing key's: a box that trusts another key could not update again."""
    proc = subprocess.run(["unsquashfs", "-cat", str(root), "etc/appliance/vendor.pub"], capture_output=True)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if proc.returncode != 0 or proc.stdout != pub:
        raise UpdateError(f"{root}: the image trusts another vendor key than --signing-key; sign the bundle with the "
                          "key the image was built with")
