"""Current state per check and a bounded history of transitions, actions and server restarts, in SQLite.

Only changes are written (a check that stays ok writes nothing), so the
history survives restarts, stays small, and reads as a timeline. Every
restart of the server, whoever saw it (the supervisor, systemd's
ExecStopPost, the monitor), is one ``restart`` row with its cause.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator

from appliance.health.status import Result, Status

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    name TEXT PRIMARY KEY, status INTEGER NOT NULL, reason TEXT NOT NULL,
    since REAL NOT NULL, checked REAL NOT NULL, duration REAL, "values" TEXT
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, name TEXT NOT NULL,
    kind TEXT NOT NULL, old INTEGER, new INTEGER, reason TEXT NOT NULL
);
"""


class EventKind(str, Enum):
    TRANSITION = "transition"  # a check (or the box) changed status
    ACTION = "action"  # something the monitor did or noted
    RESTART = "restart"  # the server went down and was brought back; the reason says why


@dataclass
class StateRow:
    name: str
    status: Status
    reason: str
    since: float
    checked: float
    duration: float | None
    values: dict


@dataclass
class HistoryRow:
    id: int
    at: float
    name: str
    kind: EventKind
    old: Status | None
    new: Status | None
    reason: str


class History:
    def __init__(self, path: Path, max_rows: int = 10000):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        path.chmod(0o600)
        self.max_rows = max_rows

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside land together: readers see all of them or none."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def record(self, name: str, result: Result, duration: float | None = None) -> bool:
        """Store the latest result; returns True (and writes history) when the status changed."""
        now = time.time()
        row = self.db.execute("SELECT status FROM state WHERE name=?", (name,)).fetchone()
        old = Status(row[0]) if row else None
        changed = old != result.status
        values = json.dumps(result.values, default=str)[:4000]
        if changed:
            self.db.execute("INSERT OR REPLACE INTO state VALUES (?,?,?,?,?,?,?)",
                            (name, int(result.status), result.reason, now, now, duration, values))
            self._append(now, name, EventKind.TRANSITION, old, result.status, result.reason)
        else:
            self.db.execute('UPDATE state SET reason=?, checked=?, duration=?, "values"=? WHERE name=?',
                            (result.reason, now, duration, values, name))
        return changed

    def action(self, name: str, reason: str) -> None:
        self._append(time.time(), name, EventKind.ACTION, None, None, reason)

    def restart(self, name: str, cause: str) -> None:
        self._append(time.time(), name, EventKind.RESTART, None, None, cause)

    def restarts(self) -> tuple[int, HistoryRow | None]:
        """How many restarts the history holds, and the latest."""
        (count,) = self.db.execute("SELECT COUNT(*) FROM history WHERE kind=?", (EventKind.RESTART.value,)).fetchone()
        last = self.recent(1, kind=EventKind.RESTART)
        return count, last[0] if last else None

    def _append(self, at: float, name: str, kind: EventKind, old: Status | None, new: Status | None, reason: str) -> None:
        cur = self.db.execute("INSERT INTO history (at, name, kind, old, new, reason) VALUES (?,?,?,?,?,?)",
                              (at, name, kind.value, None if old is None else int(old), None if new is None else int(new),
                               reason))
        self.db.execute("DELETE FROM history WHERE id <= ?", (cur.lastrowid - self.max_rows,))

    def states(self) -> list[StateRow]:
        rows = self.db.execute('SELECT name, status, reason, since, checked, duration, "values" FROM state '
                               "ORDER BY name").fetchall()
        return [StateRow(n, Status(s), r, si, c, d, json.loads(v or "{}")) for n, s, r, si, c, d, v in rows]

    def recent(self, limit: int = 20, name: str | None = None, kind: EventKind | None = None) -> list[HistoryRow]:
        where = {"name": name, "kind": kind.value if kind else None}
        clauses = [f"{col}=?" for col, v in where.items() if v is not None]
        sql = "SELECT id, at, name, kind, old, new, reason FROM history"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        args = tuple(v for v in where.values() if v is not None)
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [HistoryRow(i, a, n, EventKind(k), None if o is None else Status(o), None if w is None else Status(w), r)
                for i, a, n, k, o, w, r in rows]

    def clear_state(self) -> None:
        """Forget current states at monitor start (checks that no longer exist must not linger)."""
        self.db.execute("DELETE FROM state")


def snapshot(path: Path, limit: int = 20) -> dict:
    """The state and recent history as JSON-able data: for `appliance health --json` and the server."""
    if not path.is_file():
        return {"box": {"status": "unknown", "reason": "the health monitor has not run yet"}, "checks": [],
                "restarts": {"count": 0, "last": None}, "history": []}
    h = History(path)
    try:
        states = h.states()
        box = next((s for s in states if s.name == "box"), None)
        count, last = h.restarts()
        return {
            "box": {"status": box.status.label, "reason": box.reason, "since": box.since} if box else
            {"status": "unknown", "reason": "no checks recorded yet"},
            "checks": [{"name": s.name, "status": s.status.label, "reason": s.reason, "since": s.since,
                        "checked": s.checked, "duration_s": s.duration, "values": s.values}
                       for s in states if s.name != "box"],
            "restarts": {"count": count, "last": {"at": last.at, "reason": last.reason} if last else None},
            "history": [{"at": r.at, "name": r.name, "kind": r.kind.value,
                         "old": r.old.label if r.old is not None else None,
                         "new": r.new.label if r.new is not None else None, "reason": r.reason}
                        for r in h.recent(limit)],
        }
    finally:
        h.close()
