import pytest

from fake_box import box  # noqa: F401  (the fixture)
from appliance.errors import UpdateError
from appliance.update import slots
from appliance.update.slots import SlotState


@pytest.mark.parametrize(("name", "state", "left", "done"), [
    ("appliance-0001-a.conf", SlotState.GOOD, None, 0),
    ("appliance-0002-b+3.conf", SlotState.TRYING, 3, 0),
    ("appliance-0002-b+1-2.conf", SlotState.TRYING, 1, 2),
    ("appliance-0002-b+0-3.conf", SlotState.BAD, 0, 3),
])
def test_entry_names_carry_the_try_counter(tmp_path, name, state, left, done):
    (tmp_path / slots.ENTRIES).mkdir(parents=True)
    (tmp_path / slots.ENTRIES / name).write_text("version 0.2.0\n")
    (entry,) = slots.entries(tmp_path)
    assert (entry.state, entry.tries_left, entry.tries_done, entry.version) == (state, left, done, "0.2.0")


def test_other_files_on_the_esp_are_not_entries_and_newest_comes_first(tmp_path):
    d = tmp_path / slots.ENTRIES
    d.mkdir(parents=True)
    for name in ("appliance-0001-a.conf", "appliance-0003-a+3.conf", "appliance-0002-b.conf", "debian.conf",
                 "appliance-0004-b.conf.tmp"):
        (d / name).write_text("")
    assert [(e.generation, e.slot) for e in slots.entries(tmp_path)] == [(3, "a"), (2, "b"), (1, "a")]
    assert slots.entry_of(tmp_path, "a").generation == 3


def test_the_booted_slot_comes_from_the_kernel_command_line(box):
    assert box.disk.booted() == "a"
    box.boot("b")
    assert box.disk.booted() == "b"
    assert box.disk.partuuid("b").startswith("2222")
    assert box.disk.size("b") == 1 << 20
    box.disk.cmdline.write_text("root=/dev/sda1 ro quiet\n")
    with pytest.raises(UpdateError, match="no appliance.slot= on the kernel command line"):
        box.disk.booted()


def test_the_running_release_is_read_or_the_error_says_where(box):
    assert box.disk.release().version == "0.1.0"
    box.disk.release_file.unlink()
    with pytest.raises(UpdateError, match="release.json: cannot tell which version runs"):
        box.disk.release()
