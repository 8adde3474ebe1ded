"""Restart the server when it is dead or wrong, with back-off and a limit; then say the box failed.

Under systemd the restart goes through ``systemctl`` (a polkit rule lets the
monitor's user restart only the server unit); under ``appliance up`` the
monitor kills the server process and the supervisor starts it again.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from appliance.health.exits import request_restart

log = logging.getLogger(__name__)


class Restarter:
    def restart(self, reason: str) -> str:
        """Ask for a restart because of ``reason``; return what was done, for the history."""
        raise NotImplementedError


class SystemdRestarter(Restarter):
    """``systemctl restart``; the server unit's ExecStopPost records the exit with the reason left here."""

    def __init__(self, unit: str, state_dir: Path):
        self.unit, self.state_dir = unit, state_dir

    def restart(self, reason: str) -> str:
        request_restart(self.state_dir, reason)
        proc = subprocess.run(["systemctl", "restart", "--no-block", self.unit], capture_output=True, text=True,
                              timeout=30)
        if proc.returncode != 0:
            return f"systemctl restart {self.unit} failed: {proc.stderr.strip()[:200]}"
        return f"asked systemd to restart {self.unit}"


class SupervisedRestarter(Restarter):
    """The server writes its pid; killing it hands the restart to `appliance up`'s supervisor."""

    def __init__(self, pid_file: Path, state_dir: Path):
        self.pid_file, self.state_dir = pid_file, state_dir

    def restart(self, reason: str) -> str:
        request_restart(self.state_dir, reason)
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return f"no server pid in {self.pid_file}; the supervisor restarts a server that exited"
        try:
            os.kill(pid, signal.SIGKILL)  # also ends a stopped (SIGSTOP) or hung process
        except ProcessLookupError:
            return f"server pid {pid} already gone; the supervisor restarts it"
        return f"killed hung server pid {pid}; the supervisor restarts it"


class RecoveryPolicy:
    """Consecutive-failure trigger, a grace period after each restart, and a restart budget per window.

    ``clock`` gives the seconds that grace and window are measured in; tests pass a fake one.
    """

    def __init__(self, restarter: Restarter, failures_before_restart: int, max_restarts: int, window: float,
                 grace: float, clock: Callable[[], float] = time.monotonic):
        self.restarter = restarter
        self.clock = clock
        self.failures_before_restart = failures_before_restart
        self.max_restarts = max_restarts
        self.window = window
        self.grace = grace
        self.restarts: list[float] = []
        self.consecutive: dict[str, int] = {}
        self.gave_up_reason: str | None = None

    def observe(self, check: str, failed: bool) -> None:
        self.consecutive[check] = self.consecutive.get(check, 0) + 1 if failed else 0

    def decide(self, reasons: dict[str, str]) -> str | None:
        """Return an action taken (for the history), or None."""
        now = self.clock()
        self.restarts = [t for t in self.restarts if now - t < self.window]
        due = [c for c, n in self.consecutive.items() if n >= self.failures_before_restart]
        if not due:
            if not self.restarts:
                self.gave_up_reason = None
            return None
        if self.restarts and now - self.restarts[-1] < self.grace:
            return None
        if len(self.restarts) >= self.max_restarts:
            if self.gave_up_reason is None:
                self.gave_up_reason = (f"server restarted {len(self.restarts)} times in {self.window / 60:.0f} min and "
                                       f"still fails ({reasons.get(due[0], due[0])}); not restarting again: "
                                       "collect diagnostics and contact the vendor")
                return f"gave up: {self.gave_up_reason}"
            return None
        self.restarts.append(now)
        for c in due:
            self.consecutive[c] = 0
        why = f"{due[0]}: {reasons.get(due[0], 'failed')}"
        return f"restart #{len(self.restarts)} because {why} -> " + self.restarter.restart(why)
