"""What a collector is: a name, what it gathers (shown to the admin), a time limit, and ``collect``.

Laid out like ``sos report`` plugins and the Home Assistant Supervisor's
checks: one small class per file. ``collect`` returns file names and their
text; the runner redacts every one, and records a collector that raises or
overruns its time instead of stopping the others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from appliance.settings import BoxSettings

Files = dict[str, str]


@dataclass
class Context:
    """What collectors read: the box's settings and a clock (injected in tests)."""

    settings: BoxSettings
    clock: Callable[[], float]
    journal_hours: float = 24.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandOutput:
    """A command's result, or why there was none; a missing tool is a fact to record, not a failure."""

    args: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    missing: bool = False

    def as_text(self) -> str:
        head = f"$ {' '.join(self.args)}\n"
        if self.missing:
            return head + f"({self.args[0]} is not installed here: not a systemd box, e.g. a development machine)\n"
        tail = f"\n(exit status {self.returncode})\n" if self.returncode else ""
        return head + self.stdout + (f"\n--- stderr ---\n{self.stderr}" if self.stderr.strip() else "") + tail


def run_command(*args: str, timeout: float = 10.0) -> CommandOutput:
    if shutil.which(args[0]) is None:
        return CommandOutput(args, None, "", "", missing=True)
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        return CommandOutput(args, None, "", f"no answer within {timeout:g} s")
    return CommandOutput(args, proc.returncode, proc.stdout, proc.stderr)


def as_json(data: Any) -> str:
    return json.dumps(data, indent=2, default=str, sort_keys=False) + "\n"


class Collector:
    """Subclasses set ``name`` and ``gathers`` and implement ``collect``."""

    name: str = "collector"
    gathers: str = ""
    timeout: float = 20.0

    def collect(self, ctx: Context) -> Files:
        raise NotImplementedError
