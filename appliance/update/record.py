"""The last update, kept on the data partition so that both slots see it: what was applied where, and how its trial
boots went. Written by root (apply) and read by the console, so it belongs to the state directory's owner."""

from __future__ import annotations

import os
import time
from enum import Enum
from pathlib import Path

from pydantic import BaseModel, Field

FILE = "update.json"


class Outcome(str, Enum):
    PENDING = "pending"  # written to the other slot; not yet booted, or on trial
    INSTALLED = "installed"  # booted and blessed
    ROLLED_BACK = "rolled-back"  # ran out of tries; the box is back on the previous slot


class UpdateRecord(BaseModel):
    slot: str
    version: str
    from_slot: str
    from_version: str
    generation: int
    applied_at: float
    outcome: Outcome = Outcome.PENDING
    attempts: list[str] = Field(default_factory=list, description="one line per trial boot that did not pass")
    reason: str = ""
    settled_at: float | None = None


def load(state_dir: Path) -> UpdateRecord | None:
    try:
        return UpdateRecord.model_validate_json((state_dir / FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # unreadable (written by a newer schema, or cut short): treated as no record


def save(state_dir: Path, record: UpdateRecord) -> None:
    write_owned(state_dir / FILE, record.model_dump_json(indent=2) + "\n", owner=state_dir)


def write_owned(path: Path, text: str, owner: Path) -> None:
    """Replace ``path`` whole, owned by ``owner``'s owner: root writes what the unprivileged server reads."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    st = owner.stat()
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(tmp, st.st_uid, st.st_gid)
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    tmp.replace(path)


def settle(state_dir: Path, record: UpdateRecord, outcome: Outcome, reason: str, now: float | None = None) -> None:
    record.outcome, record.reason, record.settled_at = outcome, reason, now or time.time()
    save(state_dir, record)
