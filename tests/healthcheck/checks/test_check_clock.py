"""Clock sanity: a wall clock before the store's build date, or one that jumps, is named."""

from __future__ import annotations

import asyncio

from appliance.health.status import Status
from healthcheck.checks import clock
from healthcheck.checks.clock import ClockSanity


def test_clock_before_build_and_jumps(monkeypatch):
    wall, mono = [1_800_000_000.0], [100.0]
    monkeypatch.setattr(clock.time, "time", lambda: wall[0])
    monkeypatch.setattr(clock.time, "monotonic", lambda: mono[0])
    check = ClockSanity("2026-01-01T00:00:00+00:00", 300)
    assert asyncio.run(check.probe()).status == Status.OK
    wall[0] += 1000
    mono[0] += 300
    jumped = asyncio.run(check.probe())
    assert jumped.status == Status.DEGRADED and "jumped +700 s" in jumped.reason
    early = asyncio.run(ClockSanity("2030-01-01T00:00:00+00:00", 300).probe())
    assert early.status == Status.DEGRADED and "before the store was built" in early.reason
