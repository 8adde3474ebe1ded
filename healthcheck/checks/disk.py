"""Free space where the box writes state and reads its store."""

from __future__ import annotations

import shutil
from pathlib import Path

from appliance.health.status import Result, Status
from healthcheck.checks.base import Check


class DiskSpace(Check):
    name = "disk"

    def __init__(self, paths: dict[str, Path], period: float, degraded_ratio: float, failed_ratio: float,
                 degraded_bytes: int, failed_bytes: int):
        self.paths, self.period, self.timeout = paths, period, 10.0
        self.limits = (degraded_ratio, failed_ratio, degraded_bytes, failed_bytes)

    async def probe(self) -> Result:
        dr, fr, db, fb = self.limits
        worst, reasons, values = Status.OK, [], {}
        for label, path in self.paths.items():
            try:
                u = shutil.disk_usage(path)
            except OSError as exc:
                reasons.append(f"{label} {path}: cannot stat ({exc.strerror})")
                worst = Status.FAILED
                continue
            ratio = u.free / u.total if u.total else 0.0
            values[label] = {"free_bytes": u.free, "free_ratio": round(ratio, 4)}
            human = f"{u.free / 2**20:.0f} MiB free ({ratio:.0%}) on {path}"
            if ratio < fr or u.free < fb:
                worst = Status.FAILED
                reasons.append(f"{label}: only {human}; the box cannot record state: free space now")
            elif ratio < dr or u.free < db:
                worst = max(worst, Status.DEGRADED)
                reasons.append(f"{label}: {human}; free space soon (old logs, diagnostics bundles)")
        if worst == Status.OK:
            return Result.ok("enough free space", **values)
        return Result(worst, "; ".join(reasons), values)
