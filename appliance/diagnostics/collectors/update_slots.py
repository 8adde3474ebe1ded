"""Update slot status: which root slot booted, each slot's state, version and tries left, and the last update."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json, run_command
from appliance.errors import UpdateError
from appliance.update.slots import Disk
from appliance.update.status import read_status


class UpdateSlots(Collector):
    name = "update_slots"
    gathers = "A/B root slots (booted, state, version, tries left), the last update's outcome, bootctl status"

    def __init__(self, disk: Disk | None = None):
        self.disk = disk or Disk()

    def collect(self, ctx: Context) -> Files:
        try:
            slots = read_status(self.disk, ctx.settings.state_dir).model_dump_json(indent=2) + "\n"
        except (UpdateError, OSError) as exc:  # not booted from the disk image, or the ESP is not readable here
            slots = as_json({"slots": None, "note": str(exc)})
        return {"update-slots.json": slots,
                "bootctl.txt": run_command("bootctl", "status", "--no-pager").as_text()}
