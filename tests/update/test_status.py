from fake_box import box  # noqa: F401  (the fixture)
from appliance.update.apply import apply
from appliance.update.record import Outcome
from appliance.update.slots import SlotState
from appliance.update.status import read_status


def test_shows_both_slots_and_the_pending_update(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    report = read_status(box.disk, box.state_dir)
    assert [(s.slot, s.booted, s.state, s.version, s.tries_left) for s in report.slots] == [
        ("a", True, SlotState.GOOD, "0.1.0", None), ("b", False, SlotState.TRYING, "0.2.0", 3)]
    assert report.last_update.outcome is Outcome.PENDING


def test_a_slot_booted_on_its_last_try_is_still_on_trial(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    entries = box.disk.esp / "loader/entries"
    (entries / "appliance-0002-b+3.conf").rename(entries / "appliance-0002-b+0-3.conf")
    box.boot("b")
    b = read_status(box.disk, box.state_dir).slots[1]
    assert (b.booted, b.state, b.tries_left) == (True, SlotState.TRYING, 0)
    box.boot("a")
    assert read_status(box.disk, box.state_dir).slots[1].state is SlotState.BAD


def test_the_running_version_is_the_roots_release_or_the_package_version(box):
    from appliance import __version__
    from appliance.update.status import running_version

    assert running_version(box.disk) == "0.1.0"
    box.disk.release_file.unlink()
    assert running_version(box.disk) == __version__
