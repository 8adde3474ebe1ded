"""Sessions end when idle, when too old, and all at once when the password changes; CSRF tokens are per session."""

from __future__ import annotations

from appliance.auth.sessions import SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _store(tmp_path, clock) -> SessionStore:
    return SessionStore(tmp_path / "console.sqlite", b"k" * 32, clock=clock, idle=60, absolute=600)


def test_idle_and_absolute_expiry(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    changed = lambda user: 0.0  # noqa: E731
    token = store.create("admin")
    for _ in range(9):
        clock.now += 59
        assert store.lookup(token, changed) is not None  # each use restarts the idle clock
    clock.now += 100
    assert store.lookup(token, changed) is None  # past the absolute limit although never idle for long
    idle = store.create("admin")
    clock.now += 61
    assert store.lookup(idle, changed) is None


def test_password_change_ends_older_sessions_and_revoke_all(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    token = store.create("admin")
    assert store.lookup(token, lambda u: clock.now - 1) is not None
    assert store.lookup(token, lambda u: clock.now + 1) is None  # password changed after the session began
    a, b = store.create("admin"), store.create("admin")
    assert store.revoke_all("admin") == 2
    assert store.lookup(a, lambda u: 0.0) is None and store.lookup(b, lambda u: 0.0) is None
    assert store.lookup("made-up", lambda u: 0.0) is None and store.lookup(None, lambda u: 0.0) is None


def test_csrf_token_belongs_to_its_session(tmp_path):
    clock = Clock()
    store = _store(tmp_path, clock)
    one = store.lookup(store.create("admin"), lambda u: 0.0)
    two = store.lookup(store.create("admin"), lambda u: 0.0)
    assert store.csrf_valid(one, store.csrf_token(one))
    assert not store.csrf_valid(one, store.csrf_token(two))
    assert not store.csrf_valid(one, "") and not store.csrf_valid(one, "forged.token")
    other_box = SessionStore(tmp_path / "other.sqlite", b"x" * 32, clock=clock)
    assert not store.csrf_valid(one, other_box.csrf_token(one))
