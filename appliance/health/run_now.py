"""The console's "re-run the checks" button: a marker file the monitor picks up within a second.

The server and the monitor never call each other; the state directory is
what they share.
"""

from __future__ import annotations

from pathlib import Path

REQUEST_FILE = "health.run-now"


def request_check_run(state_dir: Path) -> None:
    (state_dir / REQUEST_FILE).touch()


def take_check_run_request(state_dir: Path) -> bool:
    try:
        (state_dir / REQUEST_FILE).unlink()
    except FileNotFoundError:
        return False
    return True
