"""Entry point: one ``appliance`` command with a sub-command per area."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from appliance.cli import build, cluster, diagnostics, firstboot, health, keys, serve, sku, store, support, update
from appliance.errors import ApplianceError

app = typer.Typer(
    name="appliance",
    help="Local AI appliance: factory build, serving daemon, health monitor.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(build.app, name="build")
app.add_typer(store.app, name="store")
app.add_typer(sku.app, name="sku")
app.add_typer(keys.app, name="keys")
app.add_typer(health.app, name="health")
app.add_typer(diagnostics.app, name="diagnostics")
app.add_typer(support.app, name="support")
app.add_typer(update.app, name="update")
app.command("serve")(serve.serve)
app.command("up")(serve.up)
app.command("firstboot")(firstboot.firstboot)
app.command("cluster")(cluster.cluster)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        app()
    except ApplianceError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
