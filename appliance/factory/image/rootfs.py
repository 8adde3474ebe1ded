"""The root filesystem: debootstrap (cached), then the box's files, user, units and a trimmed kernel."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from appliance.errors import ApplianceError
from appliance.factory.image.commands import Mounts, in_root, run
from appliance.factory.image.recipe import MIRROR, SUITE, Recipe

UNITS = ("appliance-firstboot.service", "appliance-server.service", "appliance-health.service",
         "appliance-boot-check.service", "appliance-update.path", "appliance-update.service")
# appliance-update.service has no [Install]: its path unit starts it when the console hands an update over.
ENABLED = ("systemd-networkd.service", *(u for u in UNITS if u != "appliance-update.service"))
# The boot loader on the ESP is shared by both slots: it changes with a new disk image, never behind an update's back.
MASKED = ("systemd-boot-update.service",)
# Never needed on the box, and the bulk of a Debian root: documentation, translations, package caches.
TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
        "usr/share/bug", "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old",
        "var/cache/ldconfig/aux-cache")
# Kernel drivers a headless CPU box does not use: sound, video capture, wireless, GPUs (the NVIDIA SKU
# brings its own driver), InfiniBand, staging. What is left still boots NVMe, SATA, USB and virtio.
TRIM_MODULES = ("sound", "drivers/media", "drivers/net/wireless", "drivers/gpu", "drivers/infiniband",
                "drivers/staging", "drivers/bluetooth", "net/bluetooth", "drivers/isdn", "drivers/iio",
                "net/wireless", "net/mac80211", "drivers/input/joystick", "drivers/input/touchscreen",
                "drivers/video/fbdev", "drivers/net/can", "net/can", "drivers/mtd", "drivers/hwmon",
                "drivers/net/ethernet/mellanox", "drivers/scsi/qla2xxx", "drivers/scsi/lpfc", "drivers/scsi/bfa",
                "drivers/comedi", "drivers/target", "drivers/net/usb", "lib/test_bpf.ko",
                # Network and cluster filesystems and protocols nothing on the box mounts or speaks.
                "fs/xfs", "fs/btrfs", "fs/smb", "fs/ocfs2", "fs/nfs", "fs/nfsd", "fs/gfs2", "fs/f2fs", "fs/ceph",
                "fs/jfs", "fs/reiserfs", "fs/nilfs2", "fs/dlm", "fs/ubifs", "fs/orangefs", "fs/afs",
                "net/netfilter", "net/sunrpc", "net/tipc", "net/smc", "net/sctp", "net/rxrpc", "net/rose",
                "net/netrom", "net/ax25", "net/batman-adv", "net/ceph", "net/rds", "net/l2tp")


def base_root(recipe: Recipe, cache: Path, root: Path) -> bool:
    """Unpack the Debian base for this package list, running debootstrap only when it is not cached.

    Returns whether the cache was used."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"debootstrap-{SUITE}-{recipe.base_key}.tar"
    hit = tarball.exists()
    if not hit:
        tmp = cache / (tarball.stem + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(recipe.packages), SUITE, str(tmp), MIRROR],
            "debootstrap (see its log under the cache's .tmp root if this persists)")
        for rel in TRIM:
            _remove(tmp / rel)
        run(["tar", "--numeric-owner", "--xattrs", "-C", str(tmp), "-cf", str(tarball) + ".part", "."], "caching the base")
        Path(str(tarball) + ".part").rename(tarball)
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    run(["tar", "--numeric-owner", "--xattrs", "-xpf", str(tarball), "-C", str(root)], "unpacking the base")
    return hit


def configure(recipe: Recipe, root: Path, *, test_access: bool) -> None:
    """The box's own files over the Debian base: config, units, polkit rule, the service user, a small kernel."""
    _copy_tree(recipe.dir / "rootfs", root)
    for unit in UNITS:
        shutil.copy2(recipe.dir / "systemd" / unit, root / "etc/systemd/system" / unit)
    rules = root / "etc/polkit-1/rules.d"
    rules.mkdir(parents=True, exist_ok=True)
    shutil.copy2(recipe.dir / "polkit/50-appliance-health.rules", rules)
    if test_access:
        _copy_tree(recipe.dir / "test-access", root)
    in_root(root, ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/appliance", "--no-create-home",
                   "--shell", "/usr/sbin/nologin", "appliance"], "creating the service user")
    in_root(root, ["systemctl", "enable", *ENABLED], "enabling the units")
    in_root(root, ["systemctl", "mask", *MASKED], "masking the units")
    (root / "efi").mkdir(exist_ok=True)  # mount points must exist on a read-only root
    (root / "etc/machine-id").write_text("")
    _remove(root / "var/lib/dbus/machine-id")
    (root / "var/lib/dbus").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/dbus/machine-id").symlink_to("/etc/machine-id")
    for rel in TRIM:
        _remove(root / rel)


def trim_kernel(root: Path) -> list[str]:
    """Drop the driver trees in TRIM_MODULES and rebuild the initramfs with only the listed modules."""
    kernels = sorted(p.name for p in (root / "lib/modules").iterdir() if p.is_dir())
    if not kernels:
        raise ApplianceError(f"{root}/lib/modules: no kernel installed; add linux-image-amd64 to image-build/packages.txt")
    for version in kernels:
        for rel in TRIM_MODULES:
            _remove(root / "lib/modules" / version / "kernel" / rel)
        in_root(root, ["depmod", "-a", version], "depmod")
    with Mounts(root):
        in_root(root, ["update-initramfs", "-u", "-k", "all"], "update-initramfs")
    return kernels


def write_release(root: Path, release: dict) -> None:
    """/etc/appliance/release.json: what this root is (version, commit, SKU, store digest), read by the box."""
    path = root / "etc/appliance/release.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(release, indent=2, sort_keys=True) + "\n")


def packages(root: Path) -> list[dict]:
    out = in_root(root, ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"], "listing packages")
    return [{"name": n, "version": v} for n, v in (line.split("\t") for line in out.splitlines() if line)]


def split_var(root: Path, var: Path) -> None:
    """/var goes to the data partition's first contents; the read-only root keeps an empty mount point."""
    shutil.rmtree(var, ignore_errors=True)
    shutil.move(str(root / "var"), str(var))
    (root / "var").mkdir()
    for rel in ("log", "tmp"):
        for child in (var / rel).iterdir() if (var / rel).is_dir() else ():
            _remove(child)
    (var / "log/journal").mkdir(parents=True, exist_ok=True)


def _copy_tree(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        target = dst / path.relative_to(src)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove(target)
            shutil.copy2(path, target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
