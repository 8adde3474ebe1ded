"""Console sessions: random tokens stored hashed, idle and absolute expiry, all revoked on a password change.

The cookie carries only the token; everything else stays on the box. The
CSRF token is the session's id signed with the box's session secret
(itsdangerous), so it needs no storage and dies with the session.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from itsdangerous import BadSignature, URLSafeSerializer

from appliance.auth.admins import open_db

IDLE_S = 30 * 60
ABSOLUTE_S = 12 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, username TEXT NOT NULL, created_at REAL NOT NULL, last_seen REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Session:
    id: str  # sha256 of the token; never the token itself
    username: str
    created_at: float
    last_seen: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path, secret: bytes, clock: Callable[[], float] = time.time,
                 idle: float = IDLE_S, absolute: float = ABSOLUTE_S):
        self.db: sqlite3.Connection = open_db(path)
        self.db.executescript(_SCHEMA)
        self.clock, self.idle, self.absolute = clock, idle, absolute
        self._csrf = URLSafeSerializer(secret, salt="appliance-console-csrf")
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def create(self, username: str) -> str:
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self.db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_digest(token), username, now, now))
        return token

    def lookup(self, token: str | None, password_changed_at: Callable[[str], float | None]) -> Session | None:
        """The live session for ``token`` (its idle clock restarted), or None if unknown, expired or revoked."""
        if not token:
            return None
        sid, now = _digest(token), self.clock()
        row = self.db.execute("SELECT id, username, created_at, last_seen FROM sessions WHERE id=?", (sid,)).fetchone()
        if row is None:
            return None
        session = Session(*row)
        changed = password_changed_at(session.username)
        if (now - session.last_seen > self.idle or now - session.created_at > self.absolute
                or changed is None or changed > session.created_at):
            self.revoke(token)
            return None
        with self._lock:
            self.db.execute("UPDATE sessions SET last_seen=? WHERE id=?", (now, sid))
        return Session(session.id, session.username, session.created_at, now)

    def revoke(self, token: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM sessions WHERE id=?", (_digest(token),))

    def revoke_all(self, username: str) -> int:
        with self._lock:
            return self.db.execute("DELETE FROM sessions WHERE username=?", (username,)).rowcount

    def csrf_token(self, session: Session) -> str:
        return self._csrf.dumps(session.id)

    def csrf_valid(self, session: Session, token: str | None) -> bool:
        if not token:
            return False
        try:
            return secrets.compare_digest(str(self._csrf.loads(token)), session.id)
        except BadSignature:
            return False
