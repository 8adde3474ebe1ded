"""The trial boot: a slot written by an update is blessed only when its server is ready (engines verified, golden
self-tests passed) within a deadline. Otherwise this boot fails, systemd reboots, systemd-boot spends one of the
slot's tries, and after the last one the previous slot boots again.

Run by ``appliance-boot-check.service`` on every boot. On a trial boot its exit status decides (the unit has
``FailureAction=reboot`` and is required by ``boot-complete.target``, after which ``systemd-bless-boot`` marks the
entry good). On any other boot it only notes how the last update ended, and always succeeds.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from appliance.errors import UpdateError
from appliance.health.history import History
from appliance.update import record, slots
from appliance.update.record import Outcome
from appliance.update.slots import Disk, SlotState

HISTORY_NAME = "update"


class Server(Protocol):
    def ready(self) -> bool:
        """/readyz answers 200."""

    def not_serving(self) -> str | None:
        """Why the server said it will not serve (a refused store), or that it stopped for good; None otherwise."""


class SystemdServer:
    """The box's own server: its readiness probe on loopback, and what systemd knows of the unit."""

    def __init__(self, url: str, cert: Path, unit: str = "appliance-server.service"):
        self.url, self.unit = url, unit
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(cert)) if cert.is_file() else False

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", verify=self.verify, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def not_serving(self) -> str | None:
        proc = subprocess.run(["systemctl", "show", self.unit, "-p", "StatusText", "-p", "ActiveState", "-p",
                               "Result"], capture_output=True, text=True)
        props = dict(line.partition("=")[::2] for line in proc.stdout.splitlines())
        if props.get("StatusText", "").startswith("not serving"):
            return "the server is " + props["StatusText"]
        if props.get("ActiveState") == "failed":
            return f"the server failed ({props.get('Result', 'unknown')}) and systemd gave up restarting it"
        return None


@dataclass
class Verdict:
    passed: bool
    line: str


def drop_privileges(state_dir: Path) -> None:
    """Root is needed only to read the ESP; the state is written as its owner, so the server can still open it."""
    owner = state_dir.stat()
    if os.geteuid() == 0 and owner.st_uid != 0:
        os.setgroups([])
        os.setgid(owner.st_gid)
        os.setuid(owner.st_uid)


def boot_check(disk: Disk, state_dir: Path, health_db: Path, server: Callable[[], Server], *, deadline: float,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               drop: Callable[[Path], None] = drop_privileges) -> Verdict:
    try:
        booted = disk.booted()
        mine, theirs = slots.entry_of(disk.esp, booted), slots.entry_of(disk.esp, slots.other(booted))
    except (UpdateError, OSError) as exc:  # never a reason to reboot: only a slot on trial may fail this check
        return Verdict(True, f"not a trial boot ({exc})")
    trial = mine is not None and mine.tries_left is not None  # on its last try a trial entry reads +0 while booted
    if not trial:
        try:
            drop(state_dir)
            with _history(health_db) as history:
                return Verdict(True, _settle(state_dir, history, record.load(state_dir), booted, mine, theirs))
        except Exception as exc:  # noqa: BLE001  an ordinary boot must never be failed (and rebooted) by this
            return Verdict(True, f"not a trial boot; could not record the last update's outcome: {exc}")
    drop(state_dir)
    last = record.load(state_dir)
    with _history(health_db) as history:
        verdict = _trial(server(), mine, deadline, clock, sleep)
        history.action(HISTORY_NAME, verdict.line)
        if last is not None and last.slot == booted and last.outcome is Outcome.PENDING:
            if verdict.passed:
                record.settle(state_dir, last, Outcome.INSTALLED, verdict.line)
            else:
                last.attempts.append(verdict.line)
                record.save(state_dir, last)
        return verdict


@contextmanager
def _history(path: Path) -> Iterator[History]:
    history = History(path)
    try:
        yield history
    finally:
        history.close()


def _trial(server: Server, entry: slots.Entry, deadline: float, clock: Callable[[], float],
           sleep: Callable[[float], None]) -> Verdict:
    what = f"slot {entry.slot.upper()} ({entry.version}) on trial, boot {entry.tries_done} of {slots.TRIES}"
    start = clock()
    while True:
        if server.ready():
            return Verdict(True, f"{what}: ready after {clock() - start:.0f} s; blessed")
        why = server.not_serving()
        if why is None and clock() - start >= deadline:
            why = f"not ready within {deadline:.0f} s"
        if why is not None:
            then = (f"{entry.tries_left} tries left, rebooting" if entry.tries_left
                    else "no tries left, rebooting into the previous slot")
            return Verdict(False, f"{what}: {why}; {then}")
        sleep(2.0)


def _settle(state_dir: Path, history: History, last: record.UpdateRecord | None, booted: str,
            mine: slots.Entry | None, theirs: slots.Entry | None) -> str:
    if last is None or last.outcome is not Outcome.PENDING:
        return "not a trial boot"
    if last.slot == booted and mine is not None and mine.state is SlotState.GOOD:
        line = f"version {last.version} in slot {booted.upper()} installed"
        record.settle(state_dir, last, Outcome.INSTALLED, line)
    elif last.slot != booted and theirs is not None and theirs.state is SlotState.BAD:
        tried = f"; last try: {last.attempts[-1]}" if last.attempts else ""
        line = (f"rolled back to slot {booted.upper()} ({last.from_version}): version {last.version} in slot "
                f"{last.slot.upper()} did not become healthy in {slots.TRIES} boots{tried}")
        record.settle(state_dir, last, Outcome.ROLLED_BACK, line)
    else:
        return "not a trial boot; the last update has not been booted yet"
    history.action(HISTORY_NAME, line)
    return line
