"""The vendor's support window: a time-limited token the admin opens and closes, and the audit log of its calls.

Vendor access is off until the admin opens a window (default 4 h, at most
72 h). The token is shown once and stored as its SHA-256; it opens only the
read-only ``/v1/support/*`` routes, never the API keys' routes. A window ends
at its time or when the admin closes it; opening a new one closes the old.
Every call with a support token, allowed or refused, is one audit row.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Callable

from appliance.auth.admins import open_db
from appliance.errors import ApplianceError

TOKEN_PREFIX = "sup-appl-"
DEFAULT_HOURS = 4.0
MAX_HOURS = 72.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY AUTOINCREMENT, token_sha256 TEXT NOT NULL, opened_by TEXT NOT NULL,
    opened_at REAL NOT NULL, ends_at REAL NOT NULL, closed_at REAL, closed_by TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, window_id INTEGER, method TEXT NOT NULL,
    route TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL
);
"""


class WindowState(str, Enum):
    OPEN = "open"
    EXPIRED = "expired"
    CLOSED = "closed"


@dataclass(frozen=True)
class Window:
    id: int
    opened_by: str
    opened_at: float
    ends_at: float
    closed_at: float | None
    closed_by: str | None

    def state(self, now: float) -> WindowState:
        if self.closed_at is not None:
            return WindowState.CLOSED
        return WindowState.OPEN if now < self.ends_at else WindowState.EXPIRED


@dataclass(frozen=True)
class AuditRow:
    at: float
    window_id: int | None
    method: str
    route: str
    status: int
    outcome: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SupportStore:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.db: sqlite3.Connection = open_db(path)
        self.db.executescript(_SCHEMA)
        self.clock = clock
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> SupportStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, hours: float, by: str) -> tuple[Window, str]:
        """A new window and its token (shown once); any window still open is closed first."""
        if not 0 < hours <= MAX_HOURS:
            raise ApplianceError(f"a support window lasts more than 0 and at most {MAX_HOURS:g} hours, not {hours:g}; "
                                 "pass --hours between those")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self.db.execute("UPDATE windows SET closed_at=?, closed_by=? WHERE closed_at IS NULL", (now, by))
            cur = self.db.execute("INSERT INTO windows (token_sha256, opened_by, opened_at, ends_at) VALUES (?,?,?,?)",
                                  (_digest(token), by, now, now + hours * 3600))
        return self.get(cur.lastrowid), token  # type: ignore[return-value]

    def close_window(self, by: str) -> Window | None:
        """Close the open window now; None when there was none."""
        current = self.current()
        if current is None:
            return None
        with self._lock:
            self.db.execute("UPDATE windows SET closed_at=?, closed_by=? WHERE id=?", (self.clock(), by, current.id))
        return self.get(current.id)

    def get(self, window_id: int) -> Window | None:
        row = self.db.execute("SELECT id, opened_by, opened_at, ends_at, closed_at, closed_by FROM windows WHERE id=?",
                              (window_id,)).fetchone()
        return Window(*row) if row else None

    def latest(self) -> Window | None:
        row = self.db.execute("SELECT MAX(id) FROM windows").fetchone()
        return self.get(row[0]) if row and row[0] is not None else None

    def current(self) -> Window | None:
        """The window open now, if any."""
        latest = self.latest()
        return latest if latest and latest.state(self.clock()) is WindowState.OPEN else None

    def authenticate(self, token: str) -> Window | None:
        """The open window this token belongs to; None for an unknown token or a window expired or closed."""
        current = self.current()
        if current is None or not token.startswith(TOKEN_PREFIX):
            return None
        (stored,) = self.db.execute("SELECT token_sha256 FROM windows WHERE id=?", (current.id,)).fetchone()
        return current if hmac.compare_digest(stored, _digest(token)) else None

    def audit(self, window_id: int | None, method: str, route: str, status: int, outcome: str) -> None:
        with self._lock:
            self.db.execute("INSERT INTO audit (at, window_id, method, route, status, outcome) VALUES (?,?,?,?,?,?)",
                            (self.clock(), window_id, method, route, status, outcome))

    def audit_log(self, limit: int = 200) -> list[AuditRow]:
        rows = self.db.execute("SELECT at, window_id, method, route, status, outcome FROM audit ORDER BY id DESC "
                               "LIMIT ?", (limit,)).fetchall()
        return [AuditRow(*r) for r in rows]
