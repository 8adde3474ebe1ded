"""``appliance health``: the box's health state and recent transitions; ``health run``: the monitor."""

from __future__ import annotations

import asyncio
import json
import logging
import os

import typer
from rich.console import Console
from rich.table import Table

from appliance.cli.display import local_time
from appliance.cli.options import settings_command
from appliance.settings import PHONE_HOME_FIELDS, BoxSettings
from healthcheck.settings import HealthSettings

app = typer.Typer(help="Health state, history and the monitor.", invoke_without_command=True)

_COLOR = {"ok": "green", "degraded": "yellow", "failed": "red", "unknown": "white"}


@app.callback()
@settings_command(BoxSettings, "state_dir")
def show(
    settings: BoxSettings,
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    last: int = typer.Option(15, "--last", help="how many transitions to show"),
) -> None:
    """Current state of the box and of each check, the restart count, and the last transitions."""
    if ctx.invoked_subcommand is not None:
        return
    from appliance.health.history import snapshot

    from appliance.diagnostics.phonehome import describe, read_attempt

    snap = snapshot(settings.health_db, last)
    if as_json:
        attempt = read_attempt(settings)
        snap["phone_home"] = {"on": settings.phone_home, "url": settings.phone_home_url,
                              "minutes": settings.phone_home_minutes,
                              "last": attempt.model_dump() if attempt else None}
        typer.echo(json.dumps(snap, indent=2))
        return
    console = Console(width=max(120, Console().width))
    box = snap["box"]
    console.print(f"box: [bold {_COLOR[box['status']]}]{box['status']}[/] - {box['reason']}")
    restarts = snap["restarts"]
    last_restart = restarts["last"]
    console.print(f"server restarts: {restarts['count']}" +
                  (f" (last {local_time(last_restart['at'])}: {last_restart['reason']})" if last_restart else ""),
                  highlight=False)
    console.print(f"phone-home: {describe(settings)}", highlight=False, markup=False)
    t = Table(title="checks")
    for col in ("check", "state", "since", "last checked", "reason"):
        t.add_column(col)
    for c in snap["checks"]:
        t.add_row(c["name"], f"[{_COLOR[c['status']]}]{c['status']}[/]", local_time(c["since"]),
                  local_time(c["checked"]), c["reason"])
    console.print(t)
    h = Table(title=f"last {len(snap['history'])} transitions, actions and restarts")
    for col in ("at", "what", "change", "reason"):
        h.add_column(col)
    for r in snap["history"]:
        change = {"transition": f"{r['old'] or 'new'} -> {r['new']}"}.get(r["kind"], r["kind"])
        h.add_row(local_time(r["at"]), r["name"], change, r["reason"])
    console.print(h)
    if box["status"] == "failed":
        raise typer.Exit(1)


@app.command("run")
@settings_command(HealthSettings, "state_dir", "store", "trusted_key", "server", "supervised", *PHONE_HOME_FIELDS)
def run(settings: HealthSettings) -> None:
    """The monitor process (appliance-health.service): probe, record transitions, recover."""
    from healthcheck.monitor import Monitor

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    asyncio.run(Monitor(settings).run())


@app.command("record-exit")
@settings_command(BoxSettings, "state_dir")
def record_exit(settings: BoxSettings) -> None:
    """Put a server exit on record with its cause (the server unit's ExecStopPost; systemd sets the variables)."""
    from appliance.health.exits import describe_systemd_exit, record_server_exit

    how = describe_systemd_exit(os.environ.get("SERVICE_RESULT", ""), os.environ.get("EXIT_CODE", ""),
                                os.environ.get("EXIT_STATUS", ""))
    line = record_server_exit(settings, how, "systemd")
    typer.echo(line or "server stopped cleanly; nothing to record")
