from dataclasses import dataclass, field

from fake_box import box  # noqa: F401  (the fixture)
from appliance.health.history import History
from appliance.update import record
from appliance.update.apply import apply
from appliance.update.bootcheck import boot_check
from appliance.update.record import Outcome


@dataclass
class FakeServer:
    ready_after: float | None = None  # seconds on the injected clock; None: never
    refused: str | None = None
    now: list = field(default_factory=lambda: [0.0])

    def ready(self) -> bool:
        return self.ready_after is not None and self.now[0] >= self.ready_after

    def not_serving(self) -> str | None:
        return self.refused


def _check(box, server, deadline=60.0):
    def sleep(s):
        server.now[0] += s
    return boot_check(box.disk, box.state_dir, box.state_dir / "health.sqlite", lambda: server, deadline=deadline,
                      clock=lambda: server.now[0], sleep=sleep, drop=lambda _: None)


def _trial_boot(box, left: int, done: int):
    """What systemd-boot does before starting a slot on trial: count the try down in the entry's name."""
    entries = box.disk.esp / "loader/entries"
    current = next(entries.glob("appliance-0002-b*.conf"))
    current.rename(entries / f"appliance-0002-b+{left}-{done}.conf")
    box.boot("b")


def _history(box) -> list[str]:
    h = History(box.state_dir / "health.sqlite")
    try:
        return [r.reason for r in reversed(h.recent(20, name="update"))]
    finally:
        h.close()


def test_a_slot_that_becomes_ready_in_time_passes_and_is_installed(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    _trial_boot(box, 2, 1)
    verdict = _check(box, FakeServer(ready_after=30.0))
    assert verdict.passed and "ready after 30 s; blessed" in verdict.line
    assert record.load(box.state_dir).outcome is Outcome.INSTALLED
    assert _history(box) == [verdict.line]


def test_a_refused_store_fails_at_once_and_three_failures_roll_back(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    server = FakeServer(refused="the server is not serving: engines were built for SKU cpu-x86_64-avx512")
    for left, done in ((2, 1), (1, 2), (0, 3)):
        _trial_boot(box, left, done)
        verdict = _check(box, server)
        assert not verdict.passed and "cpu-x86_64-avx512" in verdict.line
    assert "no tries left, rebooting into the previous slot" in verdict.line
    assert server.now[0] == 0.0  # a refusal needs no waiting
    box.boot("a")  # systemd-boot sorts the spent entry last, so slot A comes up
    back = _check(box, FakeServer(ready_after=0.0))
    assert back.passed and "rolled back to slot A (0.1.0): version 0.2.0 in slot B did not become healthy" in back.line
    last = record.load(box.state_dir)
    assert last.outcome is Outcome.ROLLED_BACK and len(last.attempts) == 3
    assert _history(box)[-1] == back.line and len(_history(box)) == 4


def test_a_slot_that_never_answers_fails_at_the_deadline(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    _trial_boot(box, 2, 1)
    server = FakeServer()
    verdict = _check(box, server, deadline=120.0)
    assert not verdict.passed and "not ready within 120 s; 2 tries left, rebooting" in verdict.line
    assert server.now[0] >= 120.0


def test_an_ordinary_boot_passes_and_writes_nothing(box):
    verdict = _check(box, FakeServer())
    assert verdict.passed and verdict.line == "not a trial boot"
    assert _history(box) == []


def test_a_pending_update_not_yet_booted_is_left_pending(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    assert _check(box, FakeServer()).passed
    assert record.load(box.state_dir).outcome is Outcome.PENDING


def test_an_ordinary_boot_is_never_failed_even_when_nothing_can_be_read(box):
    box.disk.cmdline.unlink()  # e.g. /proc hidden from the unit
    verdict = _check(box, FakeServer())
    assert verdict.passed and "not a trial boot" in verdict.line


def test_a_failure_to_record_on_an_ordinary_boot_does_not_fail_it(box):
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    (box.state_dir / "health.sqlite").mkdir()  # the history cannot be opened
    verdict = _check(box, FakeServer())
    assert verdict.passed and "could not record" in verdict.line


def test_a_trial_reads_everything_it_needs_from_the_esp_before_dropping_root(box):
    """The ESP is root's alone on the box: after the drop, the entry must not be read again."""
    apply(box.bundle(), box.disk, box.state_dir, box.key.public_key())
    _trial_boot(box, 2, 1)
    server = FakeServer(ready_after=0.0)

    def drop(_):
        for entry in (box.disk.esp / "loader/entries").iterdir():
            entry.chmod(0)
            entry.rename(entry.with_name(entry.name + ".gone"))

    verdict = boot_check(box.disk, box.state_dir, box.state_dir / "health.sqlite", lambda: server, deadline=60.0,
                         clock=lambda: 0.0, sleep=lambda _: None, drop=drop)
    assert verdict.passed and "slot B (0.2.0) on trial, boot 1 of 3" in verdict.line
