"""``appliance build ...``: the factory commands."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.spec import load_spec

app = typer.Typer(help="Factory: build the model store (and, later, the disk image).", no_args_is_help=True)


@app.command("models")
def models(
    spec: Path = typer.Option(Path("appliance.toml"), "--spec", help="box spec (appliance.toml)"),
    out: Path = typer.Option(..., "--out", help="model store directory to create or replace"),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="vendor ed25519 private key (PEM)"),
    cache: Path | None = typer.Option(None, "--cache", help="source cache (default ~/.cache/appliance/sources)"),
) -> None:
    """Sources -> ONNX -> parity -> SKU-tuned, signed model store."""
    box = load_spec(spec)
    from appliance.factory.pipeline import build_models

    build_models(box, out, signing_key, cache)
