import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.self_tests import SelfTests
from appliance.health.history import History
from appliance.health.status import Result


def test_golden_and_integrity_results_only(box_settings):
    h = History(box_settings.health_db)
    h.record("golden.tiny-chat", Result.failed("output differs from the golden tokens at position 3"))
    h.record("disk", Result.ok())
    h.close()
    data = json.loads(SelfTests().collect(Context(box_settings, clock=lambda: 0.0))["self-tests.json"])
    assert [r["name"] for r in data["results"]] == ["golden.tiny-chat"] and data["note"] is None
