"""What the box itself knows to be secret or personal, fed to the redactor as literals before any rule runs.

Rules catch secrets by their shape; this catches them by value, so a secret
that a log or a collector happened to print in an unexpected shape still goes.
The store's sha256 sums are the opposite: public to the vendor, kept.
"""

from __future__ import annotations

import getpass
import json
import pwd
import socket
import sqlite3
from pathlib import Path

import psutil

from appliance.diagnostics.redaction import Category, Redactor, user_literals
from appliance.settings import BoxSettings
from appliance.store.manifest import INDEX_FILE, MANIFEST_FILE

# (database, table, column, category): columns that hold secrets or names, wherever they are stored
_COLUMNS = (
    ("keys_db", "api_keys", "secret_sha256", Category.SECRET),
    ("console_db", "admins", "password_hash", Category.PASSWORD_HASH),
    ("console_db", "admins", "username", Category.USER),
    ("console_db", "setup_code", "code_hash", Category.PASSWORD_HASH),
    ("console_db", "sessions", "id", Category.SECRET),
    ("console_db", "sessions", "username", Category.USER),
    ("support_db", "windows", "token_sha256", Category.SECRET),
)
_SECRET_FILES = ("session_secret_file", "monitor_key_file")


def _column(db: Path, table: str, column: str) -> list[str]:
    if not db.is_file():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            rows = con.execute(f'SELECT "{column}" FROM "{table}"').fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return []
    return [v.hex() if isinstance(v, bytes) else str(v) for (v,) in rows if v is not None]


def _pem_bodies(text: str) -> list[str]:
    """A PEM key whole and line by line: a log that wrapped it differently still loses every line."""
    return [text] + [line for line in text.splitlines() if line and not line.startswith("-----")]


def _system_users() -> list[str]:
    names = {getpass.getuser()} | {u.name for u in psutil.users()}
    names |= {p.pw_name for p in pwd.getpwall() if p.pw_uid >= 1000 and p.pw_name != "nobody"}
    return sorted(names)


def seed(redactor: Redactor, settings: BoxSettings) -> Redactor:
    for attr in _SECRET_FILES:
        path: Path = getattr(settings, attr)
        if path.is_file():
            redactor.add_literal(path.read_text(errors="replace").strip())
    for key_file in [*settings.tls_dir.glob("*.key"), *settings.tls_dir.glob("key*.pem"),
                     *[p for p in (getattr(settings, "tls_key", None),) if p is not None and Path(p).is_file()]]:
        for part in _pem_bodies(Path(key_file).read_text(errors="replace")):
            redactor.add_literal(part, Category.PRIVATE_KEY)
    for db_attr, table, column, category in _COLUMNS:
        values = _column(getattr(settings, db_attr), table, column)
        if category is Category.USER:
            values = user_literals(values)
        for value in values:
            redactor.add_literal(value, category)
    for name in user_literals(_system_users()):
        redactor.add_literal(name, Category.USER)
    for host in {socket.gethostname(), socket.getfqdn()} - {"localhost", "localhost.localdomain", ""}:
        redactor.add_literal(host, Category.HOSTNAME)
        redactor.add_literal(host.split(".")[0], Category.HOSTNAME)
    redactor.keep |= _store_sums(settings.store)
    return redactor


def _store_sums(store: Path) -> set[str]:
    """sha256 sums the vendor wrote into the store: not secrets, and the vendor needs them to compare."""
    sums: set[str] = set()
    try:
        index = json.loads((store / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return sums
    sums |= {m.get("manifest_sha256", "") for m in index.get("models", [])}
    for manifest in store.glob(f"*/{MANIFEST_FILE}"):
        try:
            sums |= {f.get("sha256", "") for f in json.loads(manifest.read_text()).get("files", [])}
        except (OSError, ValueError):
            continue
    return sums - {""}
