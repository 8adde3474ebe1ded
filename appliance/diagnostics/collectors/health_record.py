"""The monitor's view: current state per check, the transition history and the restart record."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json
from appliance.health.history import snapshot


class HealthRecord(Collector):
    name = "health_record"
    gathers = "box and check states, the last 500 transitions and actions, every server restart with its cause"

    def collect(self, ctx: Context) -> Files:
        snap = snapshot(ctx.settings.health_db, 500)
        restarts = [h for h in snap["history"] if h["kind"] == "restart"]
        return {"health.json": as_json({"box": snap["box"], "checks": snap["checks"], "restarts": snap["restarts"]}),
                "history.json": as_json(snap["history"]),
                "restarts.json": as_json(restarts)}
