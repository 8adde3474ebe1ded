"""Disk space: ok, degraded with a hint, failed when state can no longer be written, failed when unreadable."""

from __future__ import annotations

import asyncio
import shutil
from collections import namedtuple
from pathlib import Path

from appliance.health.status import Status
from healthcheck.checks import disk
from healthcheck.checks.disk import DiskSpace

Usage = namedtuple("Usage", "total used free")
GiB = 2**30


def _probe(monkeypatch, free: int, total: int = 100 * GiB, paths=None):
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda p: Usage(total, total - free, free))
    check = DiskSpace(paths or {"state": Path("/var/lib/appliance")}, 60, 0.10, 0.02, 512 * 2**20, 64 * 2**20)
    return asyncio.run(check.probe())


def test_thresholds(monkeypatch):
    assert _probe(monkeypatch, 50 * GiB).status == Status.OK
    low = _probe(monkeypatch, 5 * GiB)
    assert low.status == Status.DEGRADED and "free space soon" in low.reason
    full = _probe(monkeypatch, 1 * GiB)
    assert full.status == Status.FAILED and "cannot record state" in full.reason
    small_disk = _probe(monkeypatch, 400 * 2**20, total=1 * GiB)  # 39 % free but under 512 MiB
    assert small_disk.status == Status.DEGRADED


def test_unreadable_path_fails(tmp_path):
    r = asyncio.run(DiskSpace({"state": tmp_path / "missing"}, 60, 0.1, 0.02, 0, 0).probe())
    assert r.status == Status.FAILED and "cannot stat" in r.reason
    assert shutil.disk_usage(tmp_path)  # the real call still works on a real path
