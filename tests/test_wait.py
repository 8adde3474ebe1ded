"""wait_until: returns the first truthy value; on timeout names what it waited for, with diagnostics."""

import pytest

from wait import wait_until


def test_returns_the_first_truthy_value():
    calls = iter([0, None, "", 7])
    assert wait_until(lambda: next(calls), timeout=30, interval=0) == 7


def test_timeout_names_what_and_adds_details():
    with pytest.raises(AssertionError, match=r"waiting for the moon \(last: False\)\nlog tail"):
        wait_until(lambda: False, timeout=0, what="the moon", details=lambda: "log tail")


def test_ignored_errors_are_not_yet_and_others_propagate():
    seen = []

    def flaky():
        seen.append(1)
        if len(seen) < 3:
            raise ConnectionError("refused")
        return True

    assert wait_until(flaky, timeout=30, interval=0, ignore=(ConnectionError,)) is True
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, timeout=30, ignore=(ConnectionError,))
    with pytest.raises(AssertionError, match="ConnectionError"):
        wait_until(lambda: (_ for _ in ()).throw(ConnectionError("refused")), timeout=0, ignore=(ConnectionError,))
