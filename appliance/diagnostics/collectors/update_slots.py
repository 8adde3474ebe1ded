"""Update slot status: which root slot booted and the other's state, once A/B updates exist."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json, run_command


class UpdateSlots(Collector):
    name = "update_slots"
    gathers = "A/B root slot status (this version has no slots: says so) and systemd-boot's entries if present"

    def collect(self, ctx: Context) -> Files:
        return {"update-slots.json": as_json({
                    "slots": None,
                    "note": "this version has no A/B update slots: `appliance update` is not built yet, so the "
                            "box runs the image it was installed with"}),
                "bootctl.txt": run_command("bootctl", "status", "--no-pager").as_text()}
