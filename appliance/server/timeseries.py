"""The box's own short time series for the console's charts: no Prometheus server on the box.

Every ``PERIOD_S`` the server samples its metrics registry (cumulative
counters as they are, so nothing is lost between samples) and the host's
CPU and memory into SQLite; a day is kept. Rates and means are computed
when read, bucketed to at most ``MAX_POINTS`` per chart.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

from appliance.server.metrics import Metrics

PERIOD_S = 5.0
KEEP_S = 25 * 3600
MAX_POINTS = 360

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    at REAL PRIMARY KEY, tokens REAL NOT NULL, requests REAL NOT NULL, ttft_sum REAL NOT NULL,
    ttft_count REAL NOT NULL, queue REAL NOT NULL, running REAL NOT NULL, cpu REAL NOT NULL, memory REAL NOT NULL
);
"""
_COLUMNS = ("at", "tokens", "requests", "ttft_sum", "ttft_count", "queue", "running", "cpu", "memory")


@dataclass
class Series:
    """Parallel arrays, as uPlot takes them: time, then one value per chart (None where there is no data)."""

    at: list[float]
    tokens_per_s: list[float | None]
    requests_per_s: list[float | None]
    ttft_s: list[float | None]
    queue: list[float | None]
    running: list[float | None]
    cpu_percent: list[float | None]
    memory_percent: list[float | None]


def _totals(metrics: Metrics) -> dict[str, float]:
    """Every sample of the registry summed over its labels, keyed by sample name; one pass per sample time."""
    out: dict[str, float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


class TimeSeries:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        self.db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)
        path.chmod(0o600)
        self.clock = clock
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    def sample(self, metrics: Metrics) -> None:
        now, t = self.clock(), _totals(metrics)
        row = (now, t.get("appliance_generated_tokens_total", 0.0), t.get("appliance_requests_total", 0.0),
               t.get("appliance_time_to_first_token_seconds_sum", 0.0),
               t.get("appliance_time_to_first_token_seconds_count", 0.0), t.get("appliance_queue_depth", 0.0),
               t.get("appliance_running_sequences", 0.0), psutil.cpu_percent(None), psutil.virtual_memory().percent)
        with self._lock:
            self.db.execute(f"INSERT OR REPLACE INTO samples VALUES ({','.join('?' * len(row))})", row)
            self.db.execute("DELETE FROM samples WHERE at < ?", (now - KEEP_S,))

    def read(self, window_s: float) -> Series:
        """The last ``window_s`` seconds, in at most MAX_POINTS buckets; counters become per-second rates."""
        now = self.clock()
        rows = self.db.execute(f"SELECT {','.join(_COLUMNS)} FROM samples WHERE at >= ? ORDER BY at",
                               (now - window_s - PERIOD_S,)).fetchall()
        out = Series([], [], [], [], [], [], [], [])
        if len(rows) < 2:
            return out
        step = max(PERIOD_S, window_s / MAX_POINTS)
        start = rows[0]
        for cur in rows[1:]:
            if cur[0] - start[0] < step and cur is not rows[-1]:
                continue
            dt = cur[0] - start[0]
            if dt <= 0:
                continue
            # a counter that went down means the server restarted: the interval has no rate
            d = [None if c < s else c - s for s, c in zip(start[1:5], cur[1:5])]
            out.at.append(round(cur[0], 1))
            out.tokens_per_s.append(None if d[0] is None else round(d[0] / dt, 2))
            out.requests_per_s.append(None if d[1] is None else round(d[1] / dt, 3))
            out.ttft_s.append(round(d[2] / d[3], 3) if d[2] is not None and d[3] else None)
            out.queue.append(cur[5])
            out.running.append(cur[6])
            out.cpu_percent.append(cur[7])
            out.memory_percent.append(cur[8])
            start = cur
        return out
