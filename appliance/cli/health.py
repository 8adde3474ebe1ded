"""``appliance health``: the box's health state and recent transitions; ``health run``: the monitor."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Health state, history and the monitor.", invoke_without_command=True)

_COLOR = {"ok": "green", "degraded": "yellow", "failed": "red", "unknown": "white"}


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


@app.callback()
def show(
    ctx: typer.Context,
    state_dir: Path | None = typer.Option(None, "--state-dir", help="state directory (default /var/lib/appliance)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    last: int = typer.Option(15, "--last", help="how many transitions to show"),
) -> None:
    """Current state of the box and of each check, and the last transitions."""
    if ctx.invoked_subcommand is not None:
        return
    from appliance.settings import load_settings
    from healthcheck.history import snapshot

    settings = load_settings(state_dir=state_dir)
    snap = snapshot(settings.health_db, last)
    if as_json:
        typer.echo(json.dumps(snap, indent=2))
        return
    console = Console(width=max(120, Console().width))
    box = snap["box"]
    console.print(f"box: [bold {_COLOR[box['status']]}]{box['status']}[/] - {box['reason']}")
    t = Table(title="checks")
    for col in ("check", "state", "since", "last checked", "reason"):
        t.add_column(col)
    for c in snap["checks"]:
        t.add_row(c["name"], f"[{_COLOR[c['status']]}]{c['status']}[/]", _when(c["since"]), _when(c["checked"]),
                  c["reason"])
    console.print(t)
    h = Table(title=f"last {len(snap['history'])} transitions and actions")
    for col in ("at", "what", "change", "reason"):
        h.add_column(col)
    for r in snap["history"]:
        change = f"{r['old'] or 'new'} -> {r['new']}" if r["kind"] == "transition" else "action"
        h.add_row(_when(r["at"]), r["name"], change, r["reason"])
    console.print(h)
    if box["status"] == "failed":
        raise typer.Exit(1)


@app.command("run")
def run(
    state_dir: Path | None = typer.Option(None, "--state-dir"),
    store: Path | None = typer.Option(None, "--store"),
    server: str | None = typer.Option(None, "--server", help="server base URL (default https://127.0.0.1:8443)"),
    trusted_key: Path | None = typer.Option(None, "--trusted-key"),
    supervised: bool = typer.Option(False, "--supervised", help="restart through `appliance up`, not systemd"),
) -> None:
    """The monitor process (appliance-health.service): probe, record transitions, recover."""
    from healthcheck.monitor import Monitor
    from healthcheck.settings import HealthSettings

    from appliance.settings import load_settings

    box = load_settings(state_dir=state_dir, store=store, trusted_key=trusted_key)
    overrides = {"state_dir": box.state_dir, "store": box.store}
    if server:
        overrides["server"] = server
    if supervised:
        overrides["supervised"] = True
    settings = HealthSettings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(Monitor(settings, box.trusted_key).run())
