import pytest

from fake_box import box  # noqa: F401  (the fixture)
from appliance.errors import UpdateError
from appliance.update import record
from appliance.update.apply import apply
from appliance.update.manifest import STATE_SCHEMA
from appliance.update.record import Outcome


def _apply(box, path, **kw):
    return apply(path, box.disk, box.state_dir, box.key.public_key(), **kw)


def test_writes_the_other_slot_and_gives_it_three_tries(box):
    done = _apply(box, box.bundle(root=b"new root " * 1000))
    assert done.slot == "b" and done.replaced == "empty"
    assert box.slot_bytes("b", 9000) == b"new root " * 1000
    assert box.entry_names() == ["appliance-0001-a.conf", "appliance-0002-b+3.conf"]
    entry = (box.disk.esp / "loader/entries/appliance-0002-b+3.conf").read_text()
    assert "version 0.2.0" in entry and "root=PARTUUID=22222222" in entry and "appliance.slot=b" in entry
    assert (box.disk.esp / "appliance/b/vmlinuz").read_bytes() == b"K" * 5000
    last = record.load(box.state_dir)
    assert (last.slot, last.version, last.from_version, last.outcome) == ("b", "0.2.0", "0.1.0", Outcome.PENDING)


def test_the_running_slot_is_never_written(box):
    before = box.slot_bytes("a", 1 << 20)
    _apply(box, box.bundle())
    assert box.slot_bytes("a", 1 << 20) == before
    assert (box.disk.esp / "appliance/a/vmlinuz").read_bytes() == b"kernel a"


def test_next_update_replaces_the_slot_booted_before(box):
    _apply(box, box.bundle())
    (box.disk.esp / "loader/entries/appliance-0002-b+3.conf").rename(box.disk.esp / "loader/entries/appliance-0002-b.conf")
    box.boot("b")
    box.disk.release_file.write_text('{"version": "0.2.0", "sku": "cpu-x86_64-avx2", "box_name": "box"}')
    done = _apply(box, box.bundle("third.bundle", version="0.3.0"))
    assert done.slot == "a" and done.replaced == "0.1.0 (good)"
    assert box.entry_names() == ["appliance-0002-b.conf", "appliance-0003-a+3.conf"]


def test_a_changed_byte_is_refused_before_anything_is_written(box):
    path = box.bundle()
    data = bytearray(path.read_bytes())
    data[data.index(b"I" * 100) + 10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UpdateError, match="initrd.img does not match its sha256"):
        _apply(box, path)
    assert box.slot_bytes("b", 100) == b"\0" * 100 and box.entry_names() == ["appliance-0001-a.conf"]
    assert record.load(box.state_dir) is None


@pytest.mark.parametrize(("kw", "message"), [
    ({"version": "0.1.0"}, "is the same as the running 0.1.0; pass --allow-downgrade"),
    ({"version": "0.0.9"}, "is older than the running 0.1.0; pass --allow-downgrade"),
    ({"min_version": "0.1.5"}, "applies on 0.1.5 or later and this box runs 0.1.0"),
    ({"sku": "cpu-x86_64-avx512"}, "is for SKU cpu-x86_64-avx512 and this box is cpu-x86_64-avx2"),
    ({"state_schema": STATE_SCHEMA + 1}, "a rollback to 0.1.0 could not read the state; pass --accept-no-rollback"),
])
def test_refusals_say_why_and_write_nothing(box, kw, message):
    with pytest.raises(UpdateError, match=message):
        _apply(box, box.bundle(**kw))
    assert box.entry_names() == ["appliance-0001-a.conf"] and box.slot_bytes("b", 100) == b"\0" * 100


def test_the_admin_may_downgrade_on_purpose(box):
    assert _apply(box, box.bundle(version="0.0.9"), allow_downgrade=True).slot == "b"


def test_a_root_larger_than_the_slot_is_refused(box):
    with pytest.raises(UpdateError, match="this box needs a new disk image"):
        _apply(box, box.bundle(root=b"x" * (2 << 20)))


def test_no_update_while_the_running_slot_is_still_on_trial(box):
    _apply(box, box.bundle())
    (box.disk.esp / "loader/entries/appliance-0002-b+3.conf").rename(
        box.disk.esp / "loader/entries/appliance-0002-b+2-1.conf")
    box.boot("b")
    box.disk.release_file.write_text('{"version": "0.2.0", "sku": "cpu-x86_64-avx2", "box_name": "box"}')
    with pytest.raises(UpdateError, match="still on trial"):
        _apply(box, box.bundle("third.bundle", version="0.3.0"))


def test_a_cut_while_writing_leaves_no_entry_for_the_half_written_slot_and_the_next_apply_works(box, monkeypatch):
    from appliance.update import apply as apply_module

    def cut(device, reader):
        reader.read(1000)
        raise KeyboardInterrupt  # stands in for the power going off mid-write

    monkeypatch.setattr(apply_module, "_write_device", cut)
    with pytest.raises(KeyboardInterrupt):
        _apply(box, box.bundle())
    assert box.entry_names() == ["appliance-0001-a.conf"]
    monkeypatch.undo()
    assert _apply(box, box.bundle()).slot == "b"
    assert box.entry_names() == ["appliance-0001-a.conf", "appliance-0002-b+3.conf"]
