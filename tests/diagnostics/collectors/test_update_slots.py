import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.update_slots import UpdateSlots


def test_says_honestly_that_there_are_no_slots(box_settings):
    files = UpdateSlots().collect(Context(box_settings, clock=lambda: 0.0))
    data = json.loads(files["update-slots.json"])
    assert data["slots"] is None and "no A/B update slots" in data["note"]
