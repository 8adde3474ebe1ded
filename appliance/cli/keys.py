"""``appliance keys``: create, list and revoke the API's bearer keys."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from appliance.auth.keys import KeyStore
from appliance.cli.options import settings_command
from appliance.settings import BoxSettings

app = typer.Typer(
    help="API keys for the OpenAI-compatible API (stored hashed; a key is shown only when created).",
    no_args_is_help=True,
)

with_state_dir = settings_command(BoxSettings, "state_dir")


def _when(value: datetime | None, fmt: str) -> str:
    return "-" if value is None else value.astimezone().strftime(fmt)


def _limit(value: int | None) -> str:
    return "-" if value is None else str(value)


KeyName = Annotated[str, typer.Argument(help="Who or what uses the key, e.g. 'laptop' or 'ci'")]
RateLimit = Annotated[int | None, typer.Option("--rate-limit", metavar="RPM", help="Requests per minute")]
TokenQuota = Annotated[int | None, typer.Option("--token-quota", metavar="N", help="Total prompt + completion tokens")]


@app.command()
@with_state_dir
def create(
    settings: BoxSettings,
    name: KeyName,
    rate_limit: RateLimit = None,
    token_quota: TokenQuota = None,
) -> None:
    """Create a key; the key itself is printed once, as the last word of the last line."""
    with KeyStore(settings.keys_db) as store:
        record, key = store.create(name, rate_limit_rpm=rate_limit, token_quota=token_quota)
    typer.echo(f"Created API key {record.id} ({record.name}).")
    typer.echo("The key is shown only once; store it now. Clients send it as 'Authorization: Bearer KEY'.")
    typer.echo(f"key: {key}")


@app.command("import")
@with_state_dir
def import_key(
    settings: BoxSettings,
    name: KeyName,
    rate_limit: RateLimit = None,
    token_quota: TokenQuota = None,
) -> None:
    """Accept on this box a key made on another (read from standard input), so one key works through a router."""
    existing = sys.stdin.readline().strip()
    with KeyStore(settings.keys_db) as store:
        record, _ = store.create(name, rate_limit_rpm=rate_limit, token_quota=token_quota, existing=existing)
    typer.echo(f"Imported API key {record.id} ({record.name}); revoke it here with `appliance keys revoke {record.id}`.")


@app.command("list")
@with_state_dir
def list_keys(settings: BoxSettings) -> None:
    """List keys with their limits and usage; secrets are never shown."""
    with KeyStore(settings.keys_db) as store:
        records = store.list()
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 200))
    if not records:
        console.print("No API keys yet; create one with `appliance keys create NAME`.", highlight=False)
        return
    table = Table(title="API keys", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True, min_width=8)
    table.add_column("name", min_width=8, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("created", no_wrap=True)
    table.add_column("last used", no_wrap=True)
    table.add_column("rpm", justify="right")
    table.add_column("quota", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("tokens in/out", justify="right")
    for r in records:
        table.add_row(
            r.id,
            Text(r.name),
            Text("revoked", style="red") if r.revoked else Text("active", style="green"),
            _when(r.created_at, "%Y-%m-%d"),
            _when(r.last_used_at, "%Y-%m-%d %H:%M"),
            _limit(r.rate_limit_rpm),
            _limit(r.token_quota),
            str(r.requests),
            f"{r.prompt_tokens}/{r.completion_tokens}",
        )
    console.print(table)


@app.command()
@with_state_dir
def revoke(
    settings: BoxSettings,
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key's id, as `appliance keys list` shows it")],
) -> None:
    """Revoke a key; a running server refuses it within a second."""
    with KeyStore(settings.keys_db) as store:
        record = store.revoke(key_id)
    typer.echo(f"Revoked API key {record.id} ({record.name}); a running server refuses it within a second.")
