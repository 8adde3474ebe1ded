"""An update handed from the console to the root apply service.

The server runs unprivileged and cannot write a root slot or the ESP. It receives the upload into the state
directory, checks the signature and every digest, and leaves the bundle there with a request written last;
``appliance-update.path`` sees the request and starts ``appliance-update.service``, which applies the bundle as
root (checking it all again: it trusts nothing the server says) and writes its progress here for the console.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum
from pathlib import Path

from pydantic import BaseModel

from appliance.errors import UpdateError
from appliance.update.apply import Stage
from appliance.update.record import write_owned

DIRECTORY = "updates"
RECEIVING = "receiving.part"
BUNDLE = "pending.bundle"
REQUEST = "request.json"  # what appliance-update.path waits for
PROGRESS = "progress.json"
WRITE_EVERY_S = 0.5
STALE_S = 120.0  # a verify or write that has not moved for this long was cut short (a power cut, a crash)


class ApplyState(str, Enum):
    QUEUED = "queued"  # handed over; the apply service has not picked it up yet
    VERIFYING = "verifying"
    WRITING = "writing"
    WRITTEN = "written"  # the other slot has its entry with tries; the next boot tries it
    REBOOTING = "rebooting"
    FAILED = "failed"

    @property
    def busy(self) -> bool:
        return self in (ApplyState.QUEUED, ApplyState.VERIFYING, ApplyState.WRITING)


class ApplyRequest(BaseModel):
    version: str
    size: int
    reboot: bool
    by: str
    at: float


class ApplyProgress(BaseModel):
    state: ApplyState
    version: str
    done: int = 0
    total: int = 0
    message: str = ""
    updated_at: float


def directory(state_dir: Path) -> Path:
    path = state_dir / DIRECTORY
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def read_progress(state_dir: Path) -> ApplyProgress | None:
    try:
        return ApplyProgress.model_validate_json((state_dir / DIRECTORY / PROGRESS).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_progress(state_dir: Path, progress: ApplyProgress) -> None:
    write_owned(directory(state_dir) / PROGRESS, progress.model_dump_json() + "\n", owner=state_dir)


def busy(state_dir: Path, now: float | None = None) -> ApplyProgress | None:
    """The update still being applied, if any: a second one waits until the first has finished or failed."""
    progress = read_progress(state_dir)
    if (state_dir / DIRECTORY / REQUEST).exists():
        return progress or ApplyProgress(state=ApplyState.QUEUED, version="?", updated_at=time.time())
    if progress is not None and progress.state in (ApplyState.VERIFYING, ApplyState.WRITING):
        if (now or time.time()) - progress.updated_at < STALE_S:
            return progress
    return None


def cancel(state_dir: Path) -> bool:
    """Withdraw a request the apply service has not taken yet (on a box without it, it would wait forever)."""
    folder = state_dir / DIRECTORY
    try:
        (folder / REQUEST).unlink()
    except FileNotFoundError:
        return False
    (folder / BUNDLE).unlink(missing_ok=True)
    progress = read_progress(state_dir)
    if progress is not None:
        write_progress(state_dir, progress.model_copy(update={"state": ApplyState.FAILED, "updated_at": time.time(),
                                                              "message": "cancelled before it was applied"}))
    return True


def hand_over(state_dir: Path, received: Path, request: ApplyRequest) -> None:
    """Leave a checked bundle for the apply service; the request goes last, so the service never sees half of it."""
    if (current := busy(state_dir)) is not None:
        raise UpdateError(f"the update to {current.version} is still {current.state.value}; wait until it has "
                          "finished or failed")
    folder = directory(state_dir)
    received.replace(folder / BUNDLE)
    write_progress(state_dir, ApplyProgress(state=ApplyState.QUEUED, version=request.version, total=request.size,
                                            updated_at=request.at))
    write_owned(folder / REQUEST, request.model_dump_json() + "\n", owner=state_dir)


def take(state_dir: Path) -> tuple[ApplyRequest, Path] | None:
    """The request and its bundle, once: the request is removed at once so the path unit does not start again."""
    path = state_dir / DIRECTORY / REQUEST
    try:
        request = ApplyRequest.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        path.unlink()
        raise UpdateError(f"{path}: unreadable request ({exc}); upload the bundle again") from None
    path.unlink()
    return request, state_dir / DIRECTORY / BUNDLE


class ProgressFile:
    """apply's Reporter, written to progress.json at most every WRITE_EVERY_S for the console to poll."""

    def __init__(self, state_dir: Path, version: str, clock: Callable[[], float] = time.time):
        self.state_dir, self.clock = state_dir, clock
        self.progress = ApplyProgress(state=ApplyState.QUEUED, version=version, updated_at=clock())
        self._written_at = float("-inf")

    def stage(self, stage: Stage, what: str, total: int) -> None:
        state = ApplyState.VERIFYING if stage is Stage.VERIFYING else ApplyState.WRITING
        self.progress = self.progress.model_copy(update={"state": state, "done": 0, "total": total, "message": what})
        self._write(force=True)

    def advance(self, n: int) -> None:
        self.progress.done += n
        self._write(force=False)

    def finish(self, state: ApplyState, message: str) -> None:
        self.progress = self.progress.model_copy(update={"state": state, "message": message})
        self._write(force=True)

    def _write(self, force: bool) -> None:
        now = self.clock()
        if force or now - self._written_at >= WRITE_EVERY_S:
            self.progress.updated_at = now
            write_progress(self.state_dir, self.progress)
            self._written_at = now
