"""Liveness: down during start-up is 'starting', down after that (or after the grace) is failed, a hang is named."""

from __future__ import annotations

import asyncio

import httpx

from appliance.health.status import Status
from healthcheck.checks.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client(handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://box")


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def test_not_listening_is_starting_within_the_grace_then_failed():
    clock = Clock()
    check = Liveness(_client(_refused), 5, 2, startup_grace=60, clock=clock)
    first = asyncio.run(check.probe())
    assert first.status == Status.DEGRADED and "starting" in first.reason
    clock.now += 61
    late = asyncio.run(check.probe())
    assert late.status == Status.FAILED and "not listening" in late.reason


def test_once_seen_alive_a_refusal_fails_at_once():
    up = {"alive": True}

    def handler(request: httpx.Request) -> httpx.Response:
        if up["alive"]:
            return httpx.Response(200, stream=httpx.ByteStream(b'{"status":"alive"}'))
        raise httpx.ConnectError("refused", request=request)

    check = Liveness(_client(handler), 5, 2, startup_grace=60, clock=Clock())
    assert asyncio.run(check.probe()).status == Status.OK
    up["alive"] = False
    assert asyncio.run(check.probe()).status == Status.FAILED


def test_a_hang_names_the_timeout_and_an_error_status_is_failed():
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    r = asyncio.run(Liveness(_client(hang), 5, 2, startup_grace=0, clock=Clock()).probe())
    assert r.status == Status.FAILED and "did not answer /healthz within 2 s" in r.reason
    r = asyncio.run(Liveness(_client(lambda req: httpx.Response(500)), 5, 2, 0, clock=Clock()).probe())
    assert r.status == Status.FAILED and "500" in r.reason
