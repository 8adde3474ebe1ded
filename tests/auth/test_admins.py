"""Claiming the box: the setup code works once, only with a strong password, and never after an admin exists."""

from __future__ import annotations

import pytest

from appliance.auth.admins import AdminStore, SetupError
from appliance.auth.passwords import WeakPassword

GOOD = "quiet-harbour-lantern-42"


def test_code_once_then_sign_in(tmp_path):
    with AdminStore(tmp_path / "console.sqlite") as admins:
        code = admins.new_setup_code()
        assert not admins.has_admin() and admins.has_setup_code()
        with pytest.raises(SetupError, match="setup code is not right"):
            admins.create_first_admin("AAAA-BBBB-CCCC", "admin", GOOD)
        with pytest.raises(WeakPassword):
            admins.create_first_admin(code, "admin", "password1234")
        admins.create_first_admin(code.lower().replace("-", " "), "admin", GOOD)
        assert admins.has_admin() and not admins.has_setup_code()
        with pytest.raises(SetupError, match="already set up"):
            admins.create_first_admin(code, "mallory", GOOD)
        with pytest.raises(SetupError, match="already exists"):
            admins.new_setup_code()
        assert admins.authenticate("admin", GOOD) is not None
        assert admins.authenticate("admin", "nope") is None and admins.authenticate("nobody", GOOD) is None


def test_password_change_needs_the_current_one_and_moves_the_change_time(tmp_path):
    with AdminStore(tmp_path / "console.sqlite") as admins:
        admins.create_first_admin(admins.new_setup_code(), "admin", GOOD)
        before = admins.get("admin").password_changed_at
        with pytest.raises(SetupError, match="current password"):
            admins.change_password("admin", "wrong", "another-calm-river-77")
        after = admins.change_password("admin", GOOD, "another-calm-river-77")
        assert after.password_changed_at >= before
        assert admins.authenticate("admin", "another-calm-river-77") and not admins.authenticate("admin", GOOD)


def test_secrets_are_stored_hashed(tmp_path):
    path = tmp_path / "console.sqlite"
    with AdminStore(path) as admins:
        code = admins.new_setup_code()
        admins.create_first_admin(code, "admin", GOOD)
    raw = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("console.sqlite-*"))
    assert GOOD.encode() not in raw and code.replace("-", "").encode() not in raw
