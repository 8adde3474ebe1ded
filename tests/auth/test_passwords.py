"""Password strength: short or guessable passwords are refused with a reason; hashes verify and nothing else."""

from __future__ import annotations

import pytest

from appliance.auth.passwords import WeakPassword, check_strength, hash_password, verify_password


@pytest.mark.parametrize("password", ["short", "password123", "qwertyuiop12", "adminadmin12"])
def test_weak_passwords_are_refused(password):
    with pytest.raises(WeakPassword):
        check_strength(password, "admin")


def test_context_words_count_as_guessable():
    with pytest.raises(WeakPassword):
        check_strength("labbox7labbox7", "admin", "labbox7")


def test_strong_password_and_hash():
    check_strength("quiet-harbour-lantern-42", "admin")
    h = hash_password("quiet-harbour-lantern-42")
    assert h.startswith("$argon2id$") and verify_password(h, "quiet-harbour-lantern-42")
    assert not verify_password(h, "quiet-harbour-lantern-43") and not verify_password("garbage", "x")
