"""Running the host's build tools (debootstrap, mksquashfs, systemd-repart, ...) with errors that say which step failed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from appliance.errors import ApplianceError

TOOLS = {
    "debootstrap": "debootstrap",
    "mksquashfs": "squashfs-tools",
    "mkfs.vfat": "dosfstools",
    "mcopy": "mtools",
    "mkfs.ext4": "e2fsprogs",
    "systemd-repart": "systemd (252 or newer)",
    "qemu-img": "qemu-utils",
}


def require_tools() -> None:
    missing = [f"{tool} (Debian package {pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise ApplianceError("image build needs " + ", ".join(missing) + "; install them with apt-get "
                             "(scripts/setup.sh does, as root)")


def run(cmd: list[str], step: str, env: dict | None = None, cwd: Path | None = None) -> str:
    """Run one build tool; on failure say which step, which command, and the last lines it printed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    except OSError as e:
        raise ApplianceError(f"image build, {step}: cannot run {cmd[0]}: {e.strerror}") from None
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
        raise ApplianceError(f"image build, {step}: `{' '.join(cmd[:3])} ...` exited {proc.returncode}: {tail}")
    return proc.stdout


def in_root(root: Path, cmd: list[str], step: str, env: dict | None = None) -> str:
    """Run a command inside the root being built (chroot), with a minimal environment."""
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    return run(["chroot", str(root), *cmd], step, env={**base, **(env or {})})


class Mounts:
    """/proc, /sys and /dev inside the root, for the steps that need them (update-initramfs); always unmounted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: list[Path] = []

    def __enter__(self) -> "Mounts":
        for src, kind in (("proc", "proc"), ("sysfs", "sysfs"), ("/dev", "bind")):
            target = self.root / ("dev" if kind == "bind" else src.replace("fs", ""))
            target.mkdir(exist_ok=True)
            args = ["mount", "--bind", src, str(target)] if kind == "bind" else ["mount", "-t", kind, src, str(target)]
            run(args, "mounting " + str(target))
            self.done.append(target)
        return self

    def __exit__(self, *exc) -> None:
        for target in reversed(self.done):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
