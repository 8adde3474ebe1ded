"""API keys for the OpenAI-compatible API, stored hashed in SQLite.

A key looks like ``sk-appl-<id>-<secret>``: the id is public (it names the key
in listings and logs), the secret is 32 random bytes and only its SHA-256 is
stored. Plain SHA-256 is enough because the secret is high-entropy; there is
nothing for a slow hash to protect.

The server checks a key on every request, so ``KeyStore`` keeps every record
in memory and treats SQLite as the source of truth: another process (the
``appliance keys`` CLI) changing the database is noticed through SQLite's
``data_version`` within ``REFRESH_INTERVAL_S``. Usage counters are batched in
memory and written at most once per ``FLUSH_INTERVAL_S`` by a background
thread, and on ``close()``. Prompts and completions never reach this module:
only counts do.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from appliance.errors import ApplianceError

KEY_PREFIX = "sk-appl-"
INTERNAL_KEY_PREFIX = "internal:"  # keys the box makes for itself; never shown to the admin to copy
MONITOR_KEY_NAME = INTERNAL_KEY_PREFIX + "health-monitor"
CONSOLE_KEY_NAME = INTERNAL_KEY_PREFIX + "console"  # the console playground's usage is counted under it
REFRESH_INTERVAL_S = 0.5
FLUSH_INTERVAL_S = 1.0
RATE_WINDOW_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_sha256 BLOB NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    last_used_at REAL,
    rate_limit_rpm INTEGER,
    token_quota INTEGER,
    requests INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0
)
"""
_COLUMNS = (
    "id, name, secret_sha256, created_at, revoked_at, last_used_at, "
    "rate_limit_rpm, token_quota, requests, prompt_tokens, completion_tokens"
)
_DUMMY_DIGEST = hashlib.sha256(b"no such key").digest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """What is known about one key; never holds the secret or its hash."""

    id: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    rate_limit_rpm: int | None
    token_quota: int | None
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class LimitDecision:
    """Why a request is refused; ``retry_after`` is None when waiting will not help (quota)."""

    kind: Literal["rate_limit", "quota"]
    reason: str
    retry_after: int | None


@dataclass(slots=True)
class _Pending:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    last_used_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    record: KeyRecord
    digest: bytes


def _utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=timezone.utc)


def _ts(value: float | None) -> datetime | None:
    return None if value is None else _utc(value)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _parse(bearer: str) -> tuple[str, str] | None:
    token = bearer.strip()
    if not token.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = token[len(KEY_PREFIX) :].partition("-")
    if not sep or len(key_id) != 8 or not secret:
        return None
    return key_id, secret


def _with_pending(record: KeyRecord, pending: _Pending | None) -> KeyRecord:
    if pending is None:
        return record
    last_used = record.last_used_at
    if pending.last_used_at is not None:
        seen = _utc(pending.last_used_at)
        last_used = seen if last_used is None else max(last_used, seen)
    return replace(
        record,
        requests=record.requests + pending.requests,
        prompt_tokens=record.prompt_tokens + pending.prompt_tokens,
        completion_tokens=record.completion_tokens + pending.completion_tokens,
        last_used_at=last_used,
    )


def _positive(value: int | None, what: str) -> int | None:
    if value is not None and value < 1:
        raise ApplianceError(f"{what} must be a positive number, got {value}; leave it out for no limit")
    return value


class KeyStore:
    """API keys in SQLite at ``path`` with an in-memory cache for the per-request checks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, _Pending] = {}
        self._windows: dict[str, deque[float]] = {}
        self._next_refresh = 0.0
        self._data_version = -1
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self._closed = False
        try:
            self._conn = self._open()
        except (OSError, sqlite3.Error) as exc:
            raise ApplianceError(
                f"cannot open the API key store {self.path}: {exc}; "
                "run as the appliance user or pass --state-dir to a writable directory"
            ) from exc
        with self._db_lock:
            self._reload()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(_SCHEMA)
        return conn

    def _reload(self) -> None:
        """Rebuild the cache from the database; the caller holds ``_db_lock``."""
        self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM api_keys").fetchall()
        with self._lock:
            self._entries = {
                row[0]: _Entry(_with_pending(self._row_record(row), self._pending.get(row[0])), bytes(row[2]))
                for row in rows
            }
        self._next_refresh = time.monotonic() + REFRESH_INTERVAL_S

    @staticmethod
    def _row_record(row: tuple[Any, ...]) -> KeyRecord:
        return KeyRecord(
            id=row[0],
            name=row[1],
            created_at=_utc(row[3]),
            revoked_at=_ts(row[4]),
            last_used_at=_ts(row[5]),
            rate_limit_rpm=row[6],
            token_quota=row[7],
            requests=row[8],
            prompt_tokens=row[9],
            completion_tokens=row[10],
        )

    def _maybe_refresh(self, force: bool = False) -> None:
        """Pick up changes made by other processes; never waits behind a flush."""
        if (not force and time.monotonic() < self._next_refresh) or not self._db_lock.acquire(blocking=False):
            return
        try:
            version = self._conn.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._reload()
            else:
                self._next_refresh = time.monotonic() + REFRESH_INTERVAL_S
        finally:
            self._db_lock.release()

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            rowcount = self._conn.execute(sql, params).rowcount
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        return rowcount

    def create(
        self, name: str, rate_limit_rpm: int | None = None, token_quota: int | None = None,
        existing: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """Make a key; the returned full key is the only time the secret exists outside the client.

        ``existing`` is a full key made on another box: several boxes behind one
        router must each accept the client's one key, and each still checks and
        can revoke it on its own.
        """
        name = name.strip()
        if not name:
            raise ApplianceError("an API key needs a name, e.g. `appliance keys create laptop`")
        _positive(rate_limit_rpm, "--rate-limit")
        _positive(token_quota, "--token-quota")
        given = _parse(existing) if existing is not None else None
        if existing is not None and given is None:
            raise ApplianceError(f"that is not an API key of a box (it should look like {KEY_PREFIX}XXXXXXXX-...); "
                                 "copy the whole key `appliance keys create` printed on the other box")
        secret = given[1] if given else secrets.token_urlsafe(32)
        with self._db_lock:
            for _ in range(1 if given else 8):
                key_id = given[0] if given else secrets.token_hex(4)
                try:
                    self._write(
                        "INSERT INTO api_keys (id, name, secret_sha256, created_at, rate_limit_rpm, token_quota)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (key_id, name, _digest(secret), time.time(), rate_limit_rpm, token_quota),
                    )
                    break
                except sqlite3.IntegrityError:
                    continue
            else:
                if given:
                    raise ApplianceError(f"key {key_id} is already in {self.path}; `appliance keys list` shows it "
                                         "(revoke it there first to replace it)")
                raise ApplianceError(f"could not find a free key id in {self.path}; try again")
            self._reload()
            record = self._entries[key_id].record
        return record, f"{KEY_PREFIX}{key_id}-{secret}"

    def list(self) -> list[KeyRecord]:
        """All keys, oldest first, with counters as of now (pending usage is flushed first)."""
        self.flush()
        with self._db_lock:
            self._reload()
        with self._lock:
            return sorted((e.record for e in self._entries.values()), key=lambda r: (r.created_at, r.id))

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke a key for good; revoking twice is harmless and keeps the first time."""
        with self._db_lock:
            updated = self._write(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", (time.time(), key_id)
            )
            if not updated:
                raise ApplianceError(f"no API key with id {key_id!r}; `appliance keys list` shows ids")
            self._reload()
            return self._entries[key_id].record

    def set_limits(self, key_id: str, rate_limit_rpm: int | None, token_quota: int | None) -> KeyRecord:
        """Change a key's rate limit and token quota (None lifts it); the server applies it within a second."""
        _positive(rate_limit_rpm, "rate limit")
        _positive(token_quota, "token quota")
        with self._db_lock:
            updated = self._write("UPDATE api_keys SET rate_limit_rpm = ?, token_quota = ? WHERE id = ?",
                                  (rate_limit_rpm, token_quota, key_id))
            if not updated:
                raise ApplianceError(f"no API key with id {key_id!r}; `appliance keys list` shows ids")
            self._reload()
            return self._entries[key_id].record

    def authenticate(self, bearer: str) -> KeyRecord | None:
        """The key's record if ``bearer`` is a valid, unrevoked key, else None."""
        self._maybe_refresh()
        parsed = _parse(bearer)
        key_id, secret = parsed if parsed is not None else ("", "")
        with self._lock:
            entry = self._entries.get(key_id)
        if entry is None and key_id:
            self._maybe_refresh(force=True)  # a key created a moment ago by `appliance keys create`
            with self._lock:
                entry = self._entries.get(key_id)
        expected = entry.digest if entry is not None else _DUMMY_DIGEST
        valid = hmac.compare_digest(_digest(secret), expected)
        if entry is None or not valid or entry.record.revoked:
            return None
        now = time.time()
        with self._lock:
            self._pending.setdefault(key_id, _Pending()).last_used_at = now
            current = self._entries.get(key_id, entry)
            record = replace(current.record, last_used_at=_utc(now))
            self._entries[key_id] = _Entry(record, current.digest)
        return record

    def record_usage(self, key_id: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one finished request against ``key_id``; written to disk by the background flush."""
        now = time.time()
        with self._lock:
            pending = self._pending.setdefault(key_id, _Pending())
            pending.requests += 1
            pending.prompt_tokens += prompt_tokens
            pending.completion_tokens += completion_tokens
            pending.last_used_at = now
            entry = self._entries.get(key_id)
            if entry is not None:
                record = replace(
                    entry.record,
                    requests=entry.record.requests + 1,
                    prompt_tokens=entry.record.prompt_tokens + prompt_tokens,
                    completion_tokens=entry.record.completion_tokens + completion_tokens,
                    last_used_at=_utc(now),
                )
                self._entries[key_id] = _Entry(record, entry.digest)
            if self._flusher is None and not self._closed:
                self._flusher = threading.Thread(target=self._flush_loop, name="keystore-flush", daemon=True)
                self._flusher.start()

    def check_limits(self, record: KeyRecord) -> LimitDecision | None:
        """None if the request may go ahead (and counts it against the rate limit), else why not."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(record.id)
            current = entry.record if entry is not None else record
            quota = current.token_quota
            if quota is not None and current.total_tokens >= quota:
                return LimitDecision("quota", f"token quota of {quota} exhausted", None)
            rpm = current.rate_limit_rpm
            if rpm is None:
                return None
            window = self._windows.setdefault(record.id, deque())
            while window and window[0] <= now - RATE_WINDOW_S:
                window.popleft()
            if len(window) >= rpm:
                wait = window[len(window) - rpm] + RATE_WINDOW_S - now
                return LimitDecision(
                    "rate_limit", f"rate limit of {rpm} requests/minute exceeded", max(1, math.ceil(wait))
                )
            window.append(now)
            return None

    def flush(self) -> None:
        """Write batched usage counters to SQLite now."""
        with self._db_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
            if not pending:
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                self._conn.executemany(
                    "UPDATE api_keys SET requests = requests + ?, prompt_tokens = prompt_tokens + ?,"
                    " completion_tokens = completion_tokens + ?,"
                    " last_used_at = MAX(COALESCE(last_used_at, 0), COALESCE(?, 0)) WHERE id = ?",
                    [
                        (p.requests, p.prompt_tokens, p.completion_tokens, p.last_used_at, key_id)
                        for key_id, p in pending.items()
                    ],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                with self._lock:
                    for key_id, p in pending.items():
                        mine = self._pending.setdefault(key_id, _Pending())
                        mine.requests += p.requests
                        mine.prompt_tokens += p.prompt_tokens
                        mine.completion_tokens += p.completion_tokens
                        if p.last_used_at is not None:
                            mine.last_used_at = max(mine.last_used_at or 0.0, p.last_used_at)
                raise

    def _flush_loop(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except sqlite3.Error:
                continue

    def close(self) -> None:
        """Flush pending counters and release the database; call on server shutdown."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        try:
            self.flush()
        finally:
            self._conn.close()

    def __enter__(self) -> KeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
