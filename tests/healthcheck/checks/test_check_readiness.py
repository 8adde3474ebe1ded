"""Readiness: ok when the server is ready, degraded while loading, failed with the server's own reason."""

from __future__ import annotations

import asyncio

import httpx

from appliance.health.status import Status
from healthcheck.checks.readiness import Readiness


def _probe(status: int, body: dict | None = None, error: Exception | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        if error is not None:
            raise error
        return httpx.Response(status, json=body)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://box")
    return asyncio.run(Readiness(client, 10, 5).probe())


def test_ready_loading_failed_unreachable():
    assert _probe(200, {"ready": True, "models": ["m"]}).status == Status.OK
    loading = _probe(503, {"state": "loading", "reason": "loading m"})
    assert loading.status == Status.DEGRADED and "loading m" in loading.reason
    failed = _probe(503, {"state": "failed", "reason": "golden self-test of m failed"})
    assert failed.status == Status.FAILED and "golden self-test of m failed" in failed.reason
    gone = _probe(0, error=httpx.ConnectError("refused"))
    assert gone.status == Status.DEGRADED and "server.liveness" in gone.reason
