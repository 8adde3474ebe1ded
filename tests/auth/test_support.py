"""Support windows with an injected clock: bounded length, expiry, closing, one open window at a time, the token."""

import pytest

from appliance.auth.support import SupportStore, WindowState
from appliance.errors import ApplianceError


@pytest.fixture()
def store(tmp_path):
    now = [1000.0]
    s = SupportStore(tmp_path / "support.sqlite", clock=lambda: now[0])
    yield s, now
    s.close()


def test_a_window_opens_the_token_until_its_end(store):
    s, now = store
    window, token = s.open(2, by="admin")
    assert token.startswith("sup-appl-") and s.authenticate(token).id == window.id
    assert s.authenticate(token + "x") is None and s.authenticate("sk-appl-abc") is None
    now[0] += 2 * 3600 - 1
    assert s.authenticate(token) is not None
    now[0] += 2
    assert s.authenticate(token) is None and s.latest().state(now[0]) is WindowState.EXPIRED


def test_closing_and_reopening(store):
    s, now = store
    _, first = s.open(4, by="admin")
    _, second = s.open(1, by="admin")
    assert s.authenticate(first) is None and s.authenticate(second) is not None
    assert s.close_window(by="admin").state(now[0]) is WindowState.CLOSED
    assert s.authenticate(second) is None and s.close_window(by="admin") is None


@pytest.mark.parametrize("hours", [0, -1, 72.5])
def test_length_is_bounded(store, hours):
    with pytest.raises(ApplianceError, match="at most 72 hours"):
        store[0].open(hours, by="admin")


def test_the_token_is_stored_hashed(store, tmp_path):
    s, _ = store
    _, token = s.open(1, by="admin")
    assert token.encode() not in (tmp_path / "support.sqlite").read_bytes()
