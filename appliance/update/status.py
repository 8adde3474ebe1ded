"""Both slots as one report: which is booted, each one's state, version and tries left, and the last update."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from appliance.errors import UpdateError
from appliance.update import record, slots
from appliance.update.record import UpdateRecord
from appliance.update.slots import Disk, SlotState


class SlotStatus(BaseModel):
    slot: str
    booted: bool
    state: SlotState
    version: str
    tries_left: int | None


class UpdateStatus(BaseModel):
    slots: list[SlotStatus]
    last_update: UpdateRecord | None


def read_status(disk: Disk, state_dir: Path) -> UpdateStatus:
    booted = disk.booted()
    rows = []
    for slot in slots.SLOTS:
        entry = slots.entry_of(disk.esp, slot)
        state = SlotState.EMPTY if entry is None else entry.state
        if entry is not None and slot == booted and entry.tries_left is not None:
            state = SlotState.TRYING  # booted on its last try, the entry already reads +0
        rows.append(SlotStatus(slot=slot, booted=slot == booted, state=state, version=entry.version if entry else "",
                               tries_left=entry.tries_left if entry else None))
    return UpdateStatus(slots=rows, last_update=record.load(state_dir))


def running_version(disk: Disk | None = None) -> str:
    """The release this root carries (its release.json); the package version where the box did not boot an image."""
    from appliance import __version__

    try:
        return (disk or Disk()).release().version
    except UpdateError:
        return __version__
