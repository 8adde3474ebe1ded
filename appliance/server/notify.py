"""systemd integration: READY=1 after the self-test, WATCHDOG=1 while the serving loop is healthy.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon runs
the same on a developer machine.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, notify_socket: str | None = None, watchdog_usec: str | None = None):
        self.enabled = bool(notify_socket)
        self.watchdog_interval = int(watchdog_usec) / 2e6 if watchdog_usec else None
        self._notify = None
        if self.enabled:
            try:
                from systemd import daemon

                self._notify = daemon.notify
            except ImportError:
                log.warning("NOTIFY_SOCKET is set but systemd-python is missing; install appliance[systemd]")
                self.enabled = False

    @classmethod
    def from_environment(cls) -> "Notifier":
        return cls(os.environ.get("NOTIFY_SOCKET"), os.environ.get("WATCHDOG_USEC"))

    def send(self, message: str) -> None:
        if self._notify is not None:
            self._notify(message)

    def ready(self, status: str) -> None:
        self.send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")


def journald_handler() -> logging.Handler | None:
    """Log straight to the journal with structured fields when running under systemd."""
    if not os.environ.get("JOURNAL_STREAM") and not os.environ.get("NOTIFY_SOCKET"):
        return None
    try:
        from systemd.journal import JournalHandler

        return JournalHandler(SYSLOG_IDENTIFIER="appliance-server")
    except ImportError:
        return None
