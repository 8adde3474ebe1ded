"""A server exit is put on record once, in words, with the monitor's reason when it asked for the restart."""

from __future__ import annotations

import signal

from appliance.health.exits import (
    describe_returncode,
    describe_systemd_exit,
    record_server_exit,
    request_restart,
)
from appliance.health.history import EventKind, History, snapshot
from appliance.settings import BoxSettings


def test_returncodes_in_words():
    assert describe_returncode(-signal.SIGKILL) == "was killed by signal 9 (SIGKILL)"
    assert describe_returncode(3) == "exited with status 3"


def test_systemd_results_in_words():
    assert describe_systemd_exit("signal", "killed", "KILL") == "was killed by signal SIGKILL"
    assert "watchdog" in describe_systemd_exit("watchdog", "killed", "ABRT")
    assert describe_systemd_exit("exit-code", "exited", "1") == "exited with status 1"
    assert "core dumped" in describe_systemd_exit("core-dump", "dumped", "SEGV")
    assert describe_systemd_exit("success", "exited", "0") is None
    assert describe_systemd_exit("", "", "") is None


def test_unrequested_exit_is_a_restart_with_its_cause(tmp_path):
    s = BoxSettings(state_dir=tmp_path)
    line = record_server_exit(s, "was killed by signal 9 (SIGKILL)", "systemd")
    assert line == "the server was killed by signal 9 (SIGKILL); systemd restarts it"
    snap = snapshot(s.health_db)
    assert snap["restarts"]["count"] == 1 and "SIGKILL" in snap["restarts"]["last"]["reason"]
    assert snap["history"][0]["kind"] == "restart"


def test_requested_restart_names_the_monitors_reason_once(tmp_path):
    s = BoxSettings(state_dir=tmp_path)
    request_restart(tmp_path, "server.liveness: did not answer /healthz within 2 s")
    line = record_server_exit(s, None, "systemd")  # systemctl restart: a clean stop
    assert line and "restarted by the health monitor (server.liveness" in line
    assert record_server_exit(s, None, "systemd") is None  # the request is used up; a clean stop is no restart
    h = History(s.health_db)
    try:
        count, last = h.restarts()
        assert count == 1 and last is not None and last.kind is EventKind.RESTART
    finally:
        h.close()
