"""Failed attempts (logins, setup codes) limited per client and per account, with a lock-out that says when."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class AttemptLimiter:
    """At most ``limit`` failures per key in ``window`` seconds; then the key is locked until the oldest expires."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self.clock = limit, window, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] >= self.window:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> int | None:
        """Seconds until any of ``keys`` may try again, or None when none is locked."""
        now = self.clock()
        with self._lock:
            waits = [self.window - (now - q[0]) for q in (self._recent(k, now) for k in keys) if len(q) >= self.limit]
        return max(1, int(max(waits)) + 1) if waits else None

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)
