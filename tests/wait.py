"""The one way tests wait for something: poll a condition until it holds or a deadline passes.

The deadline is a timeout for a hung or broken system, not a claim about
speed: set it generously, and never assert on how long the wait took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition", interval: float = 0.05,
               details: Callable[[], str] | None = None, ignore: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    On timeout raise AssertionError naming ``what`` and the last value or
    exception seen, plus ``details()`` for diagnostics (a log tail, a health
    snapshot). Exceptions of the types in ``ignore`` count as "not yet"
    (e.g. connection refused while a server starts); any other propagates.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            value, last = None, exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"timed out after {timeout:g} s waiting for {what} (last: {last!r})"
    if details is not None:
        try:
            message += "\n" + details()
        except Exception as exc:  # diagnostics must not hide the timeout
            message += f"\n(details() failed: {exc!r})"
    raise AssertionError(message)
