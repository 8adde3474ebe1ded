"""The server says its engines are verified and self-tested (/readyz), or why not."""

from __future__ import annotations

import httpx

from appliance.health.status import Result
from healthcheck.checks.base import UNREACHABLE, Check


class Readiness(Check):
    name = "server.readiness"

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float):
        self.client, self.period, self.timeout = client, period, timeout

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/readyz", timeout=self.timeout)
        except httpx.HTTPError:
            return Result.degraded(UNREACHABLE)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200:
            return Result.ok("engines verified and self-tests passed", models=body.get("models"))
        reason = body.get("reason") or (body.get("error") or {}).get("message") or f"HTTP {r.status_code}"
        if body.get("state") == "loading":
            return Result.degraded(f"server starting: {reason}")
        return Result.failed(f"server not ready: {reason}")
