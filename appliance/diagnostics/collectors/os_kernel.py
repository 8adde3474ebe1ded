"""The operating system and kernel: which Debian, which kernel, how long up."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import psutil

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json


class OsKernel(Collector):
    name = "os_kernel"
    gathers = "OS release, kernel version and command line, boot time, uptime, Python"

    def __init__(self, root: Path = Path("/")):
        self.root = root

    def collect(self, ctx: Context) -> Files:
        uname = platform.uname()
        os_release = self.root / "etc/os-release"
        boot = psutil.boot_time()
        cmdline = self.root / "proc/cmdline"
        return {"os-kernel.json": as_json({
            "os_release": _parse_os_release(os_release.read_text()) if os_release.is_file() else None,
            "kernel": {"os": uname.system, "release": uname.release, "version": uname.version,
                       "machine": uname.machine},
            "kernel_cmdline": cmdline.read_text().strip() if cmdline.is_file() else None,
            "boot_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(boot)),
            "uptime_s": round(ctx.clock() - boot),
            "python": platform.python_version(),
        })}


def _parse_os_release(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    return {k: v.strip().strip('"') for k, v in pairs}
