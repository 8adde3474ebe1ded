"""The server process answers at all: /healthz within its timeout."""

from __future__ import annotations

import time
from typing import Callable

import httpx

from appliance.health.status import Result
from healthcheck.checks.base import Check


class Liveness(Check):
    name = "server.liveness"
    affects_server = True

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float, startup_grace: float,
                 clock: Callable[[], float] = time.monotonic):
        self.client, self.period, self.timeout, self.clock = client, period, timeout, clock
        self.grace_until = clock() + startup_grace
        self.seen_alive = False

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/healthz", timeout=self.timeout)
        except httpx.ConnectError:
            if not self.seen_alive and self.clock() < self.grace_until:
                return Result.degraded("server not listening yet (starting)")
            return Result.failed("server is not listening (process down or restarting)")
        except httpx.TimeoutException:
            return Result.failed(f"server did not answer /healthz within {self.timeout:g} s (hung or overloaded)")
        if r.status_code != 200:
            return Result.failed(f"/healthz answered {r.status_code}")
        self.seen_alive = True
        return Result.ok("alive", latency_ms=round(r.elapsed.total_seconds() * 1000, 1))
