"""``appliance store verify``: is this store intact, signed by the trusted key, and for this SKU?"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from appliance.sku.detect import detect
from appliance.store.verify import verify_store

app = typer.Typer(help="Inspect and verify model stores.", no_args_is_help=True)


@app.command("verify")
def verify(
    store: Path = typer.Argument(..., help="model store directory"),
    trusted_key: Path | None = typer.Option(None, "--trusted-key", help="vendor public key (PEM)"),
    host_check: bool = typer.Option(True, "--host-check/--no-host-check",
                                    help="also check this host matches the store's SKU"),
) -> None:
    """Exit 0 if the store is intact and trusted; otherwise name the first fault and exit non-zero."""
    result = verify_store(store, trusted_key, detect() if host_check else None)
    console = Console()
    for mid, vm in result.models.items():
        m = vm.manifest
        console.print(f"ok  {mid:<28} {m.task:<11} {m.precision:<5} {len(m.files)} files verified")
    key_note = " (DEVELOPMENT key)" if result.dev_key else ""
    console.print(f"store {store} verified: SKU {result.index.sku}, signed by {result.index.signing_key_id}{key_note}")
