"""``appliance update apply``: check a bundle against this box, verify every byte, then write the slot that is not
running and give it a boot entry with tries.

The order is what makes a power cut harmless: the other slot's boot entry goes first, so a half-written slot is
never booted, and its new entry is written last, after the root, kernel and initrd are on disk and were hashed
on the way. The running slot and the data partition are never written.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import IO, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from packaging.version import Version

from appliance.errors import UpdateError
from appliance.update import bundle, record, slots
from appliance.update.manifest import STATE_SCHEMA, UpdateManifest
from appliance.update.slots import Disk, Release, SlotState


class Stage(str, Enum):
    VERIFYING = "verifying"  # signature, then every digest; nothing is written
    WRITING = "writing"  # the other slot's root, kernel, initrd and finally its boot entry


class Reporter(Protocol):
    def stage(self, stage: Stage, what: str, total: int) -> None: ...

    def advance(self, n: int) -> None: ...


class _Silent:
    def stage(self, stage: Stage, what: str, total: int) -> None:
        pass

    def advance(self, n: int) -> None:
        pass


@dataclass
class Applied:
    manifest: UpdateManifest
    slot: str
    replaced: str  # what the slot held before: a version, or "empty"
    written: int
    seconds: float


def check(manifest: UpdateManifest, running: Release, *, allow_downgrade: bool, accept_no_rollback: bool) -> None:
    """Whether this bundle may go on this box; every refusal says why and what to do."""
    if manifest.sku != running.sku:
        raise UpdateError(f"the bundle is for SKU {manifest.sku} and this box is {running.sku}; get the bundle "
                          "built for this box")
    if Version(running.version) < Version(manifest.min_version):
        raise UpdateError(f"the bundle applies on {manifest.min_version} or later and this box runs "
                          f"{running.version}; apply an update to {manifest.min_version} first")
    if Version(manifest.version) <= Version(running.version) and not allow_downgrade:
        word = "the same as" if Version(manifest.version) == Version(running.version) else "older than"
        raise UpdateError(f"the bundle's version {manifest.version} is {word} the running {running.version}; "
                          "pass --allow-downgrade to install it anyway")
    if manifest.state_schema < STATE_SCHEMA:
        raise UpdateError(f"version {manifest.version} reads state schema {manifest.state_schema}, and this box's "
                          f"state is at {STATE_SCHEMA}; it cannot run on this box's data")
    if manifest.state_schema > STATE_SCHEMA and not accept_no_rollback:
        raise UpdateError(f"version {manifest.version} moves the box's state to schema {manifest.state_schema} "
                          f"(this version reads {STATE_SCHEMA}): once it has booted, a rollback to "
                          f"{running.version} could not read the state; pass --accept-no-rollback to apply it anyway")


@contextmanager
def _lock(state_dir: Path) -> Iterator[None]:
    with (state_dir / "update.lock").open("w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpdateError(f"{state_dir}/update.lock: another update is being applied; wait for it") from None
        yield


def apply(path: Path, disk: Disk, state_dir: Path, trusted: Ed25519PublicKey, *, allow_downgrade: bool = False,
          accept_no_rollback: bool = False, reporter: Reporter | None = None) -> Applied:
    reporter = reporter or _Silent()
    t0 = time.monotonic()
    running = disk.release()
    booted = disk.booted()
    target = slots.other(booted)
    current = slots.entry_of(disk.esp, booted)
    if current is None:
        raise UpdateError(f"{disk.esp / slots.ENTRIES}: no boot entry for the running slot {booted.upper()}; is the "
                          "ESP mounted there?")
    if current.state is SlotState.TRYING:
        raise UpdateError(f"the running slot {booted.upper()} is still on trial; wait until it is blessed "
                          "(`appliance update status`) before applying another update")
    manifest = bundle.read_manifest(path, trusted)
    check(manifest, running, allow_downgrade=allow_downgrade, accept_no_rollback=accept_no_rollback)
    root = manifest.file("root.squashfs")
    if root.size > disk.size(target):
        raise UpdateError(f"the bundle's root image is {root.size} bytes and slot {target.upper()} holds "
                          f"{disk.size(target)}; this box needs a new disk image, not an update")
    with _lock(state_dir):
        reporter.stage(Stage.VERIFYING, "verifying signature and digests", manifest.size)
        bundle.verify(path, trusted, reporter.advance)
        _check_esp_room(disk, target, manifest)
        old = slots.entry_of(disk.esp, target)
        replaced = f"{old.version} ({old.state.value})" if old else "empty"
        generation = max((e.generation for e in slots.entries(disk.esp)), default=0) + 1
        for entry in slots.entries(disk.esp):
            if entry.slot == target:
                entry.path.unlink()
        _sync_dir(disk.esp / slots.ENTRIES)
        reporter.stage(Stage.WRITING, f"writing slot {target.upper()}", manifest.size)
        kernel_dir = disk.esp / "appliance" / target
        shutil.rmtree(kernel_dir, ignore_errors=True)
        kernel_dir.mkdir(parents=True)
        for f, reader in bundle.files(path, trusted, manifest, reporter.advance):
            if f.name == "root.squashfs":
                _write_device(disk.device(target), reader)
            else:
                _write_file(kernel_dir / f.name, reader)
        _sync_dir(kernel_dir)
        name = slots.entry_name(generation, target, slots.TRIES)
        _write_file(disk.esp / slots.ENTRIES / name,
                    slots.entry_text(target, manifest.version, disk.partuuid(target)).encode())
        _sync_dir(disk.esp / slots.ENTRIES)
        record.save(state_dir, record.UpdateRecord(slot=target, version=manifest.version, from_slot=booted,
                                                   from_version=running.version, generation=generation,
                                                   applied_at=time.time()))
    return Applied(manifest, target, replaced, manifest.size, time.monotonic() - t0)


def _check_esp_room(disk: Disk, target: str, manifest: UpdateManifest) -> None:
    kernel_dir = disk.esp / "appliance" / target
    freed = sum(p.stat().st_size for p in kernel_dir.iterdir()) if kernel_dir.is_dir() else 0
    need = sum(f.size for f in manifest.files if f.name != "root.squashfs") + (1 << 20)
    free = shutil.disk_usage(disk.esp).free + freed
    if need > free:
        raise UpdateError(f"{disk.esp}: {free // 2**20} MiB free for slot {target.upper()}'s kernel and initrd, "
                          f"they need {need // 2**20} MiB; this box needs a new disk image, not an update")


def _write_device(device: Path, reader: IO[bytes]) -> None:
    with device.open("r+b") as out:
        while block := reader.read(bundle.CHUNK):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())


def _write_file(path: Path, source: IO[bytes] | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as out:
        if isinstance(source, bytes):
            out.write(source)
        else:
            while block := source.read(bundle.CHUNK):
                out.write(block)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot sync a directory; the files themselves were synced
    finally:
        os.close(fd)
