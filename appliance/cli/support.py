"""``appliance support``: open and close the vendor's time-limited support window; show it and its audit log."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich import box as rich_box
from rich.console import Console
from rich.table import Table

from appliance.auth.support import DEFAULT_HOURS, MAX_HOURS, SupportStore
from appliance.cli.display import local_time
from appliance.cli.options import settings_command
from appliance.settings import BoxSettings

app = typer.Typer(help="The vendor's support window: off until opened, read-only, time-limited, audited.",
                  no_args_is_help=True)
with_state_dir = settings_command(BoxSettings, "state_dir")


@app.command("open")
@with_state_dir
def open_window(
    settings: BoxSettings,
    hours: Annotated[float, typer.Option("--hours", help=f"how long it stays open (at most {MAX_HOURS:g})")] = DEFAULT_HOURS,
) -> None:
    """Open a window; the token is printed once, as the last word of the last line."""
    settings.ensure_state_dir()
    with SupportStore(settings.support_db) as store:
        window, token = store.open(hours, by=f"cli:{getpass.getuser()}")
    typer.echo(f"Support window {window.id} open until {local_time(window.ends_at)}; the vendor may call the read-only "
               "/v1/support/* routes with this token (shown once). Close it early with `appliance support close`.")
    typer.echo(f"token: {token}")


@app.command("close")
@with_state_dir
def close_window(settings: BoxSettings) -> None:
    """Close the open window now; its token stops working at once."""
    with SupportStore(settings.support_db) as store:
        window = store.close_window(by=f"cli:{getpass.getuser()}")
    typer.echo(f"Closed support window {window.id}." if window else "No support window was open.")


@app.command("status")
@with_state_dir
def status(settings: BoxSettings, last: Annotated[int, typer.Option("--last", help="audit rows to show")] = 30) -> None:
    """Whether a window is open, and the audit log of support calls."""
    with SupportStore(settings.support_db) as store:
        window, rows = store.current(), store.audit_log(last)
    console = Console(width=max(120, Console().width))
    console.print(f"vendor access: [bold]on[/] until {local_time(window.ends_at)} "
                  f"(window {window.id}, {window.opened_by})" if window else "vendor access: [bold]off[/]",
                  highlight=False)
    table = Table(title="support calls", box=rich_box.SIMPLE_HEAD)
    for col in ("at", "window", "call", "status", "outcome"):
        table.add_column(col)
    for r in rows:
        table.add_row(local_time(r.at), str(r.window_id or "-"), f"{r.method} {r.route}", str(r.status), r.outcome)
    console.print(table)
