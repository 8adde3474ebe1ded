"""The monitor's bookkeeping: the box is the worst check, transitions are recorded, repeated failures restart
the server through the restarter with the reason left for whoever records the exit."""

from __future__ import annotations

import asyncio
import threading

from appliance.diagnostics.phonehome import PhoneHome, read_attempt
from appliance.health.exits import take_restart_request
from appliance.health.history import snapshot
from appliance.health.status import Result, Status
from appliance.settings import load_settings, write_admin_settings
from conftest import free_port
from healthcheck.checks.base import Check
from healthcheck.monitor import Monitor
from healthcheck.settings import HealthSettings
from wait import wait_until


class Named(Check):
    def __init__(self, name: str, affects_server: bool = False):
        self.name, self.affects_server = name, affects_server


def _monitor(tmp_path, **extra) -> Monitor:
    m = Monitor(HealthSettings(state_dir=tmp_path, supervised=True, failures_before_restart=2, restart_grace=0, **extra))
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


def _actions(m: Monitor, name: str) -> list[str]:
    return [h["reason"] for h in snapshot(m.s.health_db, 50)["history"] if h["name"] == name]


def test_phone_home_follows_the_admin_settings_and_a_flag_wins(tmp_path):
    m = _monitor(tmp_path)
    assert m.s.phone_home is False
    write_admin_settings(tmp_path, {"phone_home": True, "phone_home_url": "https://vendor.example/phone-home",
                                    "phone_home_minutes": 15})
    m._follow_phone_home()
    assert (m.s.phone_home, m.s.phone_home_url, m.s.phone_home_minutes) == (True, "https://vendor.example/phone-home", 15)
    assert m._phone_home_changed.is_set()
    assert _actions(m, "phone-home") == ["on: a summary every 15 min to https://vendor.example/phone-home"]
    pinned = Monitor(load_settings(HealthSettings, state_dir=tmp_path, supervised=True, phone_home=False))
    pinned._follow_phone_home()
    assert pinned.s.phone_home is False and not pinned._phone_home_changed.is_set()


def test_a_dead_vendor_costs_the_phone_home_task_only(tmp_path):
    m = _monitor(tmp_path, phone_home=True, phone_home_url=f"http://127.0.0.1:{free_port()}/phone-home")

    async def no_back_off(_: float) -> None:
        pass

    m.phone_home = PhoneHome(m.s, sleep=no_back_off, attempts=2)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def run() -> None:
        task = asyncio.create_task(m._phone_home(settle=0))
        await m._record(Named("disk"), Result.failed("disk full"), 0.1)
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),))
    thread.start()
    try:
        wait_until(lambda: any(a.startswith("failed") for a in _actions(m, "phone-home")),
                   what="the failed delivery on record", details=lambda: str(_actions(m, "phone-home")))
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()
        loop.close()
    assert snapshot(m.s.health_db)["box"]["reason"] == "disk: disk full"
    last = read_attempt(m.s)
    assert last.outcome == "failed" and last.attempts == 2 and last.pending
