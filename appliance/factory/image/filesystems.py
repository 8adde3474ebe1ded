"""The root slot's squashfs and the data partition's ext4, made from directories without mounting anything."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.factory.image.commands import run

DATA_BYTES = 128 * 2**20  # the journal is capped at 64 MiB; state is small


def squashfs(root: Path, out: Path, epoch: int) -> Path:
    """Read-only root, xz-compressed (the smallest; the x86 filter saved too little for twice the time), fixed times."""
    out.unlink(missing_ok=True)
    run(["mksquashfs", str(root), str(out), "-noappend", "-quiet", "-no-progress", "-comp", "xz",
         "-b", "1M", "-reproducible", "-mkfs-time", str(epoch), "-all-time", str(epoch), "-xattrs"],
        "making the root squashfs")
    _pad(out)
    return out


def data(var: Path, out: Path, fs_uuid: str, epoch: int) -> Path:
    """The data partition, ext4, holding the root's /var as its first contents."""
    out.unlink(missing_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "E2FSPROGS_FAKE_TIME": str(epoch)}
    run(["mkfs.ext4", "-q", "-F", "-L", "data", "-U", fs_uuid, "-E", f"hash_seed={fs_uuid},root_owner=0:0",
         "-d", str(var), str(out), f"{DATA_BYTES // 1024}k"], "making the data filesystem", env=env)
    return out


def _pad(path: Path) -> None:
    """systemd-repart copies blocks in 4 KiB units; squashfs pads only to 4 KiB already, but say so explicitly."""
    size = path.stat().st_size
    if size % 4096:
        with path.open("ab") as f:
            f.write(b"\0" * (4096 - size % 4096))
