"""The console's hand-over to the root apply service: a checked bundle and a request, taken once, progress written
for the console, one update at a time, a stale or unserved request that cannot block the box forever."""

import json

import pytest
from typer.testing import CliRunner

from fake_box import box  # noqa: F401  (the fixture)
from appliance.cli import update as update_cli
from appliance.cli.main import app
from appliance.errors import UpdateError
from appliance.update import handover
from appliance.update.apply import Stage
from appliance.update.handover import ApplyRequest, ApplyState, ProgressFile


def _request(version="0.2.0", reboot=False) -> ApplyRequest:
    return ApplyRequest(version=version, size=123, reboot=reboot, by="admin", at=1000.0)


def _received(state_dir, data=b"bundle bytes"):
    part = handover.directory(state_dir) / handover.RECEIVING
    part.write_bytes(data)
    return part


def test_hand_over_leaves_the_bundle_and_a_request_taken_once(tmp_path):
    handover.hand_over(tmp_path, _received(tmp_path), _request())
    folder = tmp_path / handover.DIRECTORY
    assert (folder / handover.BUNDLE).read_bytes() == b"bundle bytes"
    assert not (folder / handover.RECEIVING).exists()
    assert handover.read_progress(tmp_path).state is ApplyState.QUEUED
    request, bundle = handover.take(tmp_path)
    assert request == _request() and bundle == folder / handover.BUNDLE
    assert not (folder / handover.REQUEST).exists()
    assert handover.take(tmp_path) is None


def test_a_second_update_waits_for_the_first(tmp_path):
    handover.hand_over(tmp_path, _received(tmp_path), _request("0.2.0"))
    with pytest.raises(UpdateError, match="the update to 0.2.0 is still queued"):
        handover.hand_over(tmp_path, _received(tmp_path, b"other"), _request("0.3.0"))
    assert (tmp_path / handover.DIRECTORY / handover.BUNDLE).read_bytes() == b"bundle bytes"


def test_a_write_cut_short_stops_blocking_after_a_while(tmp_path):
    reporter = ProgressFile(tmp_path, "0.2.0", clock=lambda: 5000.0)
    reporter.stage(Stage.WRITING, "writing slot B", 100)
    assert handover.busy(tmp_path, now=5000.0 + 10).state is ApplyState.WRITING
    assert handover.busy(tmp_path, now=5000.0 + handover.STALE_S + 1) is None


def test_cancel_withdraws_only_what_was_not_taken(tmp_path):
    assert handover.cancel(tmp_path) is False
    handover.hand_over(tmp_path, _received(tmp_path), _request())
    assert handover.cancel(tmp_path) is True
    assert not (tmp_path / handover.DIRECTORY / handover.BUNDLE).exists()
    progress = handover.read_progress(tmp_path)
    assert progress.state is ApplyState.FAILED and "cancelled" in progress.message
    assert handover.busy(tmp_path) is None


def test_an_unreadable_request_is_removed_and_said(tmp_path):
    (handover.directory(tmp_path) / handover.REQUEST).write_text("{not json")
    with pytest.raises(UpdateError, match="unreadable request"):
        handover.take(tmp_path)
    assert handover.take(tmp_path) is None  # the path unit is not started again and again


def test_progress_is_written_on_each_stage_and_at_most_twice_a_second_between(tmp_path):
    now = [0.0]
    reporter = ProgressFile(tmp_path, "0.2.0", clock=lambda: now[0])
    reporter.stage(Stage.VERIFYING, "verifying", 1000)
    reporter.advance(100)
    assert handover.read_progress(tmp_path).done == 0  # too soon after the stage's own write
    now[0] = handover.WRITE_EVERY_S
    reporter.advance(100)
    assert handover.read_progress(tmp_path).model_dump(include={"state", "done", "total"}) == {
        "state": ApplyState.VERIFYING, "done": 200, "total": 1000}
    reporter.stage(Stage.WRITING, "writing slot B", 1000)
    assert handover.read_progress(tmp_path).model_dump(include={"state", "done"}) == {
        "state": ApplyState.WRITING, "done": 0}


def _apply_pending(box, monkeypatch, tmp_path):
    monkeypatch.setattr(update_cli, "Disk", lambda: box.disk)
    monkeypatch.setattr(update_cli.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    key = tmp_path / "vendor.pub"
    from cryptography.hazmat.primitives import serialization

    key.write_bytes(box.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    return CliRunner().invoke(app, ["update", "apply-pending", "--state-dir", str(box.state_dir),
                                    "--trusted-key", str(key)])


def test_apply_pending_writes_the_slot_and_reports_it_written(box, monkeypatch, tmp_path):
    made = box.bundle()
    part = _received(box.state_dir, made.read_bytes())
    handover.hand_over(box.state_dir, part, _request("0.2.0"))
    result = _apply_pending(box, monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    progress = handover.read_progress(box.state_dir)
    assert progress.state is ApplyState.WRITTEN and "tried on the next boot" in progress.message
    assert progress.done == progress.total > 0
    assert box.entry_names() == ["appliance-0001-a.conf", "appliance-0002-b+3.conf"]
    assert not (box.state_dir / handover.DIRECTORY / handover.BUNDLE).exists()
    assert json.loads((box.state_dir / "update.json").read_text())["version"] == "0.2.0"


def test_apply_pending_of_a_refused_bundle_says_why_and_writes_nothing(box, monkeypatch, tmp_path):
    made = box.bundle(version="0.0.9")
    handover.hand_over(box.state_dir, _received(box.state_dir, made.read_bytes()), _request("0.0.9"))
    result = _apply_pending(box, monkeypatch, tmp_path)
    assert result.exit_code != 0
    progress = handover.read_progress(box.state_dir)
    assert progress.state is ApplyState.FAILED and "older than the running 0.1.0" in progress.message
    assert box.entry_names() == ["appliance-0001-a.conf"]
    assert box.slot_bytes("b", 16) == b"\0" * 16
    assert not (box.state_dir / handover.DIRECTORY / handover.BUNDLE).exists()


def test_apply_pending_with_nothing_waiting_does_nothing(box, monkeypatch, tmp_path):
    result = _apply_pending(box, monkeypatch, tmp_path)
    assert result.exit_code == 0 and "no update is waiting" in result.output
    assert handover.read_progress(box.state_dir) is None
