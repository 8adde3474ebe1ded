"""A box's disk laid out in plain files: the ESP, two root slots, partition links, the kernel command line and the
running release, plus signed bundles made the way the factory makes them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.update import bundle, slots
from appliance.update.manifest import STATE_SCHEMA, UpdateManifest
from appliance.update.slots import Disk

SLOT_BYTES = 1 << 20
UUIDS = {"a": "11111111-1111-4111-8111-111111111111", "b": "22222222-2222-4222-8222-222222222222"}


@dataclass
class FakeBox:
    disk: Disk
    state_dir: Path
    key: Ed25519PrivateKey
    root: Path

    def boot(self, slot: str) -> None:
        self.disk.cmdline.write_text(slots.kernel_cmdline(UUIDS[slot], slot) + "\n")

    def entry_names(self) -> list[str]:
        return sorted(p.name for p in (self.disk.esp / slots.ENTRIES).iterdir())

    def slot_bytes(self, slot: str, n: int) -> bytes:
        return self.disk.device(slot).read_bytes()[:n]

    def bundle(self, name: str = "update.bundle", *, version: str = "0.2.0", min_version: str = "0",
               sku: str = "cpu-x86_64-avx2", state_schema: int = STATE_SCHEMA, root: bytes = b"R" * 300_000,
               key: Ed25519PrivateKey | None = None) -> Path:
        src = self.root / "src" / name
        src.mkdir(parents=True, exist_ok=True)
        payload = {"root.squashfs": root, "vmlinuz": b"K" * 5000, "initrd.img": b"I" * 7000}
        for n, data in payload.items():
            (src / n).write_bytes(data)
        manifest = UpdateManifest(version=version, min_version=min_version, box_name="box", sku=sku,
                                  store_digest="0" * 64, state_schema=state_schema, created=0,
                                  files=[bundle.describe(src / n, n) for n in payload])
        return bundle.write(self.root / name, manifest, {n: src / n for n in payload}, key or self.key)


@pytest.fixture
def box(tmp_path) -> FakeBox:
    esp, parts, uuids = tmp_path / "esp", tmp_path / "by-partlabel", tmp_path / "by-partuuid"
    for d in (esp / slots.ENTRIES, esp / "appliance/a", parts, uuids):
        d.mkdir(parents=True)
    for slot in slots.SLOTS:
        device = parts / f"root-{slot}"
        device.write_bytes(b"\0" * SLOT_BYTES)
        (uuids / UUIDS[slot]).symlink_to(device)
    (esp / "appliance/a/vmlinuz").write_bytes(b"kernel a")
    (esp / slots.ENTRIES / slots.entry_name(1, "a", None)).write_text(slots.entry_text("a", "0.1.0", UUIDS["a"]))
    release = tmp_path / "release.json"
    release.write_text(json.dumps({"version": "0.1.0", "sku": "cpu-x86_64-avx2", "box_name": "box"}))
    state = tmp_path / "state"
    state.mkdir()
    disk = Disk(esp=esp, by_partlabel=parts, by_partuuid=uuids, cmdline=tmp_path / "cmdline", release_file=release)
    fake = FakeBox(disk, state, Ed25519PrivateKey.generate(), tmp_path)
    fake.boot("a")
    return fake
