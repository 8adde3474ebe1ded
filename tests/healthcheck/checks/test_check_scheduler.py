"""Scheduler signals from /metrics: stuck when work waits and no step ran, overloaded when TTFT jumps."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client import generate_latest

from appliance.health.status import Status
from appliance.server.metrics import Metrics
from healthcheck.checks.scheduler import SchedulerSignals


def _check(metrics: Metrics) -> SchedulerSignals:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=generate_latest(metrics.registry))

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://box")
    return SchedulerSignals(client, period=15, timeout=10, ttft_factor=5)


def test_progress_is_ok_and_no_step_with_work_waiting_is_stuck():
    m = Metrics()
    check = _check(m)
    m.queue_depth.labels("chat").set(2)
    m.steps.labels("chat").inc(3)
    assert asyncio.run(check.probe()).status == Status.OK  # the first look has nothing to compare with
    m.steps.labels("chat").inc()
    ok = asyncio.run(check.probe())
    assert ok.status == Status.OK and ok.values["chat"]["queue"] == 2
    stuck = asyncio.run(check.probe())
    assert stuck.status == Status.DEGRADED and "scheduler of chat is stuck: 2 waiting" in stuck.reason


def test_time_to_first_token_far_above_its_usual_level_is_named():
    m = Metrics()
    check = _check(m)
    m.queue_depth.labels("chat").set(0)
    asyncio.run(check.probe())
    m.ttft.labels("chat").observe(0.4)
    assert asyncio.run(check.probe()).status == Status.OK  # sets the baseline
    for _ in range(3):
        m.ttft.labels("chat").observe(4.0)
    slow = asyncio.run(check.probe())
    assert slow.status == Status.DEGRADED and "time to first token of chat is 4.00 s" in slow.reason
