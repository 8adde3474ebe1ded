import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.update_slots import UpdateSlots
from appliance.update.slots import Disk


def test_reports_both_slots_and_which_booted(box_settings, tmp_path):
    entries = tmp_path / "esp/loader/entries"
    entries.mkdir(parents=True)
    (entries / "appliance-0001-a.conf").write_text("title Appliance 0.1.0 (slot A)\nversion 0.1.0\n")
    (entries / "appliance-0002-b+0-3.conf").write_text("title Appliance 0.2.0 (slot B)\nversion 0.2.0\n")
    (tmp_path / "cmdline").write_text("root=PARTUUID=x ro appliance.slot=a quiet\n")
    collector = UpdateSlots(Disk(esp=tmp_path / "esp", cmdline=tmp_path / "cmdline"))
    data = json.loads(collector.collect(Context(box_settings, clock=lambda: 0.0))["update-slots.json"])
    assert [(s["slot"], s["booted"], s["state"], s["version"]) for s in data["slots"]] == [
        ("a", True, "good", "0.1.0"), ("b", False, "bad", "0.2.0")]


def test_says_plainly_when_the_box_was_not_booted_from_its_image(box_settings, tmp_path):
    (tmp_path / "cmdline").write_text("root=/dev/sda1 ro\n")
    collector = UpdateSlots(Disk(esp=tmp_path / "esp", cmdline=tmp_path / "cmdline"))
    data = json.loads(collector.collect(Context(box_settings, clock=lambda: 0.0))["update-slots.json"])
    assert data["slots"] is None and "appliance.slot=" in data["note"]
