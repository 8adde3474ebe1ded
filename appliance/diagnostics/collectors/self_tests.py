"""Self-test results: the golden tests and store integrity as the monitor last ran them."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json
from appliance.health.history import snapshot

SELF_TEST_PREFIXES = ("golden.", "store.integrity")


class SelfTests(Collector):
    name = "self_tests"
    gathers = "the golden self-test of each model and the store integrity check, as last run by the monitor"

    def collect(self, ctx: Context) -> Files:
        checks = [c for c in snapshot(ctx.settings.health_db, 0)["checks"] if c["name"].startswith(SELF_TEST_PREFIXES)]
        note = None if checks else "the monitor has not run a self-test yet (appliance health run, or the console's re-run)"
        return {"self-tests.json": as_json({"results": checks, "note": note})}
