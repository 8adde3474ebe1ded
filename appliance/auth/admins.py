"""The console's admin accounts and the one-time setup code, in the state directory.

Until an admin exists the console only offers setup, which needs the code
``appliance firstboot`` printed on the box's console and in the journal:
whoever reaches the box first on the LAN cannot claim it. The code is stored
as an argon2 hash and stops working once an admin is made.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.auth.passwords import check_strength, dummy_verify, hash_password, verify_password
from appliance.errors import ApplianceError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS admins (
    username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, created_at REAL NOT NULL,
    password_changed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS setup_code (
    id INTEGER PRIMARY KEY CHECK (id = 1), code_hash TEXT NOT NULL, created_at REAL NOT NULL
);
"""
_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read off a screen, typed by hand


class SetupError(ApplianceError):
    """Setup was refused: wrong or used code, an admin already exists, a weak password."""


@dataclass(frozen=True)
class Admin:
    username: str
    created_at: float
    password_changed_at: float


def open_db(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    path.chmod(0o600)
    return db


def format_code(raw: str) -> str:
    return "-".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def normalise_code(typed: str) -> str:
    return "".join(c for c in typed.upper() if c.isalnum())


class AdminStore:
    def __init__(self, path: Path):
        self.db = open_db(path)
        self.db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> AdminStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- setup -------------------------------------------------------------------------------------
    def has_admin(self) -> bool:
        return self.db.execute("SELECT 1 FROM admins LIMIT 1").fetchone() is not None

    def has_setup_code(self) -> bool:
        return self.db.execute("SELECT 1 FROM setup_code").fetchone() is not None

    def new_setup_code(self) -> str:
        """A fresh code (replacing any earlier one) while no admin exists; shown once, stored hashed."""
        if self.has_admin():
            raise SetupError("an admin already exists; setup codes are only for a box nobody has claimed")
        raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO setup_code VALUES (1, ?, ?)", (hash_password(raw), time.time()))
        return format_code(raw)

    def create_first_admin(self, code: str, username: str, password: str, box_name: str = "") -> Admin:
        """Claim the box: the setup code must match, then it is gone for good."""
        row = self.db.execute("SELECT code_hash FROM setup_code").fetchone()
        if self.has_admin() or row is None:
            dummy_verify(password)
            raise SetupError("this box is already set up; sign in instead")
        if not verify_password(row[0], normalise_code(code)):
            raise SetupError("that setup code is not right; it is shown on the box's console and in its journal "
                             "(`journalctl -u appliance-firstboot`)")
        username = username.strip()
        if not username or len(username) > 64 or not username.isprintable():
            raise SetupError("choose a user name of 1 to 64 printable characters")
        check_strength(password, username, box_name)
        now = time.time()
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.db.execute("SELECT 1 FROM admins").fetchone():
                    raise SetupError("this box is already set up; sign in instead")
                self.db.execute("INSERT INTO admins VALUES (?, ?, ?, ?)", (username, hash_password(password), now, now))
                self.db.execute("DELETE FROM setup_code")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
        return Admin(username, now, now)

    # -- sign-in -----------------------------------------------------------------------------------
    def get(self, username: str) -> Admin | None:
        row = self.db.execute("SELECT username, created_at, password_changed_at FROM admins WHERE username=?",
                              (username,)).fetchone()
        return Admin(*row) if row else None

    def authenticate(self, username: str, password: str) -> Admin | None:
        row = self.db.execute("SELECT password_hash FROM admins WHERE username=?", (username,)).fetchone()
        if row is None:
            dummy_verify(password)
            return None
        return self.get(username) if verify_password(row[0], password) else None

    def change_password(self, username: str, current: str, new: str) -> Admin:
        if self.authenticate(username, current) is None:
            raise SetupError("the current password is not right")
        check_strength(new, username)
        with self._lock:
            self.db.execute("UPDATE admins SET password_hash=?, password_changed_at=? WHERE username=?",
                            (hash_password(new), time.time(), username))
        return self.get(username)  # type: ignore[return-value]
