"""The EFI system partition: systemd-boot, slot A's kernel and initrd, and its boot entry."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.factory.image.commands import run
from appliance.update import slots

ESP_BYTES = 64 * 2**20  # two slots' kernel + initrd (about 16 MiB each); FAT32's minimum is about 33 MiB
BOOTLOADER = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"


def layout(root: Path, tree: Path, version: str, root_uuid: str) -> dict[str, Path]:
    """Lay out the ESP's files from the built root; returns where the kernel and initrd went."""
    shutil.rmtree(tree, ignore_errors=True)
    loader = root / BOOTLOADER
    if not loader.is_file():
        raise ApplianceError(f"{loader}: systemd-boot not in the root; add systemd-boot-efi to image-build/packages.txt")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if not kernels:
        raise ApplianceError(f"{root}/boot: no kernel; add linux-image-amd64 to image-build/packages.txt")
    kver = kernels[-1].name.removeprefix("vmlinuz-")
    files = {
        "EFI/BOOT/BOOTX64.EFI": loader,
        "EFI/systemd/systemd-bootx64.efi": loader,
        "appliance/a/vmlinuz": kernels[-1],
        "appliance/a/initrd.img": root / "boot" / f"initrd.img-{kver}",
    }
    for rel, src in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, tree / rel)
    (tree / slots.ENTRIES).mkdir(parents=True)
    # No menu, and no editing the kernel command line at the boot prompt (it would open a root shell). No default
    # either: the loader's own order (a slot on trial first, newest first, spent ones last) chooses; see slots.py.
    (tree / "loader/loader.conf").write_text("timeout 0\neditor no\n")
    (tree / slots.ENTRIES / slots.entry_name(1, "a", None)).write_text(slots.entry_text("a", version, root_uuid))
    return {"kernel": tree / "appliance/a/vmlinuz", "initrd": tree / "appliance/a/initrd.img", "kernel_version": kver}


def image(tree: Path, out: Path, epoch: int) -> Path:
    """A FAT32 image of the tree, with a fixed volume id and timestamps so that rebuilds match."""
    out.unlink(missing_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1"}
    run(["mkfs.vfat", "-F", "32", "-n", "ESP", "-i", "A99E0001", "--invariant", "-C", str(out),
         str(ESP_BYTES // 1024)], "formatting the ESP", env=env)
    for path in sorted(tree.rglob("*")):
        os.utime(path, (epoch, epoch), follow_symlinks=False)
    for path in sorted(tree.iterdir()):
        run(["mcopy", "-s", "-m", "-i", str(out), str(path), "::/"], "copying into the ESP", env=env)
    return out
