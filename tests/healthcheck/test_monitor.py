"""The monitor's bookkeeping: the box is the worst check, transitions are recorded, repeated failures restart
the server through the restarter with the reason left for whoever records the exit."""

from __future__ import annotations

import asyncio

from appliance.health.exits import take_restart_request
from appliance.health.history import snapshot
from appliance.health.status import Result, Status
from healthcheck.checks.base import Check
from healthcheck.monitor import Monitor
from healthcheck.settings import HealthSettings


class Named(Check):
    def __init__(self, name: str, affects_server: bool = False):
        self.name, self.affects_server = name, affects_server


def _monitor(tmp_path) -> Monitor:
    m = Monitor(HealthSettings(state_dir=tmp_path, supervised=True, failures_before_restart=2, restart_grace=0))
    (tmp_path / "server.pid").write_text("999999999\n")  # no such process: the restarter says so, kills nothing
    return m


def test_box_is_the_worst_check_with_its_reasons(tmp_path):
    m = _monitor(tmp_path)

    async def run() -> None:
        await m._record(Named("disk"), Result.ok(), 0.1)
        await m._record(Named("clock"), Result.degraded("clock jumped"), 0.1)
        assert (m.box_state().status, m.box_state().reason) == (Status.DEGRADED, "clock: clock jumped")
        await m._record(Named("disk"), Result.failed("disk full"), 0.1)
        assert m.box_state().status == Status.FAILED and m.box_state().reason == "disk: disk full"

    asyncio.run(run())
    snap = snapshot(m.s.health_db, 50)
    assert snap["box"]["status"] == "failed"
    assert [h["new"] for h in reversed(snap["history"]) if h["name"] == "disk"] == ["ok", "failed"]


def test_two_failures_of_a_server_check_restart_it_with_the_reason(tmp_path):
    m = _monitor(tmp_path)
    live = Named("server.liveness", affects_server=True)

    async def run() -> None:
        await m._record(live, Result.failed("server is not listening"), 0.1)
        assert take_restart_request(tmp_path) is None  # one failure is not enough
        await m._record(live, Result.failed("server is not listening"), 0.1)

    asyncio.run(run())
    actions = [h for h in snapshot(m.s.health_db, 50)["history"] if h["name"] == "recovery"]
    assert len(actions) == 1 and "restart #1 because server.liveness: server is not listening" in actions[0]["reason"]
    assert take_restart_request(tmp_path) == ("the health monitor", "server.liveness: server is not listening")
