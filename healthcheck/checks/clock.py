"""The wall clock is sane: not before the store was built, no jumps against the monotonic clock."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from appliance.health.status import Result
from healthcheck.checks.base import Check


class ClockSanity(Check):
    """The wall clock is not before the store was built and does not jump against the monotonic clock."""

    name = "clock"

    def __init__(self, built_at: str | None, period: float):
        self.period, self.timeout = period, 5.0
        self.built = datetime.fromisoformat(built_at) if built_at else None
        self.last: tuple[float, float] | None = None

    async def probe(self) -> Result:
        wall, mono = time.time(), time.monotonic()
        now = datetime.fromtimestamp(wall, timezone.utc)
        problems = []
        if self.built and now < self.built:
            problems.append(f"clock says {now:%Y-%m-%d %H:%M} UTC, before the store was built ({self.built:%Y-%m-%d}): "
                            "set the time (NTP) or TLS and logs will be wrong")
        if self.last is not None:
            drift = (wall - self.last[0]) - (mono - self.last[1])
            if abs(drift) > 300:
                problems.append(f"wall clock jumped {drift:+.0f} s since the last check")
        self.last = (wall, mono)
        return Result.degraded("; ".join(problems)) if problems else Result.ok("clock sane", utc=now.isoformat())
