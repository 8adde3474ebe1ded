"""Admin passwords: argon2id hashes (argon2-cffi) and a strength check (zxcvbn) that explains a refusal."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from appliance.errors import ApplianceError

MIN_LENGTH = 10
MIN_SCORE = 3  # zxcvbn: "safely unguessable: moderate protection from offline slow-hash attacks"

_hasher = PasswordHasher()


class WeakPassword(ApplianceError):
    """The password would be guessed too easily; the message says why and what helps."""


def check_strength(password: str, *context: str) -> None:
    """Refuse short or guessable passwords; ``context`` (user name, box name) counts as guessable."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"use at least {MIN_LENGTH} characters (a few unusual words work well)")
    result = zxcvbn(password[:128], user_inputs=[c for c in context if c])
    if result["score"] < MIN_SCORE:
        feedback = result["feedback"]
        hint = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
        raise WeakPassword(f"this password is too easy to guess. {hint or 'Add another word or two.'}".strip())


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time a real check takes, so an unknown user name is not told apart by timing."""
    verify_password(_DUMMY, password)


_DUMMY = _hasher.hash("not-a-real-password-hash-target")
