"""``appliance health``: box health state and the monitor process."""

from __future__ import annotations

import typer

app = typer.Typer(help="Health state, history and the monitor.", invoke_without_command=True)
