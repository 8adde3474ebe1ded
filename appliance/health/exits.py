"""Why the server went down, in words, and the one place a restart is put on record.

Whoever sees the server process end records it: the supervisor of
``appliance up`` from the exit status, systemd through ``ExecStopPost=``
(``$SERVICE_RESULT``, ``$EXIT_CODE``, ``$EXIT_STATUS``). When the monitor
(or the admin, by changing settings) asked for the restart, the reason is
left in the state directory first, so the record names it rather than the
signal or exit status used.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from appliance.health.history import History
from appliance.settings import BoxSettings

REQUEST_FILE = "server.restart-requested"

_SYSTEMD_RESULTS = {
    "exit-code": "exited with status {status}",
    "signal": "was killed by signal {status}",
    "core-dump": "crashed (signal {status}, core dumped)",
    "watchdog": "stopped sending its watchdog heartbeat and was killed by systemd",
    "timeout": "did not start or stop in time",
    "oom-kill": "was killed by the kernel's out-of-memory killer",
    "start-limit-hit": "failed too often for systemd to restart it again",
    "resources": "could not be started (missing resources)",
}


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_returncode(returncode: int) -> str:
    """A Popen return code in words: negative means killed by that signal."""
    if returncode < 0:
        return f"was killed by signal {-returncode} ({signal_name(-returncode)})"
    return f"exited with status {returncode}"


def describe_systemd_exit(service_result: str, exit_code: str, exit_status: str) -> str | None:
    """systemd's ExecStopPost variables in words; None for a clean stop."""
    if service_result in ("", "success"):
        return None
    template = _SYSTEMD_RESULTS.get(service_result, f"ended with result {service_result} ({exit_code} {{status}})")
    status = exit_status if exit_code != "killed" and exit_code != "dumped" else f"SIG{exit_status}"
    return template.format(status=status)


def request_restart(state_dir: Path, reason: str, by: str = "the health monitor") -> None:
    """Leave who asked and why for the one who sees the exit; written before the server is stopped."""
    path = state_dir / REQUEST_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"by": by, "reason": reason}))
    os.replace(tmp, path)


def take_restart_request(state_dir: Path) -> tuple[str, str] | None:
    """(who asked, why), once; None when nobody asked."""
    path = state_dir / REQUEST_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        data = {}
    path.unlink(missing_ok=True)
    return str(data.get("by", "someone")), str(data.get("reason", "no reason given"))


def record_server_exit(settings: BoxSettings, how: str | None, restarter: str) -> str | None:
    """Put one server exit on record; returns the line written, or None when it was a clean stop."""
    requested = take_restart_request(settings.state_dir)
    if requested:
        by, reason = requested
        cause = f"restarted by {by} ({reason}); the server {how or 'stopped cleanly'}"
    elif how:
        cause = f"the server {how}; {restarter} restarts it"
    else:
        return None
    history = History(settings.health_db)
    try:
        history.restart("server", cause)
    finally:
        history.close()
    return cause
