"""How the command line shows values to a person."""

from __future__ import annotations

from datetime import datetime


def local_time(ts: float | None) -> str:
    """A Unix time as local wall-clock time, or "-" when there is none."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"
