"""``appliance build ...``: the factory commands."""

from __future__ import annotations

from pathlib import Path

import typer

from appliance.spec import load_spec

app = typer.Typer(help="Factory: build the model store and the bootable disk image.", no_args_is_help=True)


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


@app.command("image")
def image(
    spec: Path = typer.Option(Path("appliance.toml"), "--spec", help="box spec (appliance.toml)"),
    out: Path = typer.Option(..., "--out", help="directory for the raw and qcow2 images, SHA256SUMS and report.json"),
    store: Path | None = typer.Option(None, "--store", help="a store already built from this spec (default: build it)"),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="vendor ed25519 private key (PEM)"),
    diagnostics_key: Path | None = typer.Option(None, "--diagnostics-key", help="the vendor's diagnostics public "
                                                "key (`appliance diagnostics keygen`), installed on the box"),
    cache: Path | None = typer.Option(None, "--cache", help="debootstrap and wheel cache "
                                      "(default ~/.cache/appliance/image)"),
    test_access: bool = typer.Option(False, "--test-access", help="TEST IMAGES ONLY: a root shell on the serial "
                                     "console, for the VM tests; never ship such an image"),
) -> None:
    """Debian packages + runtime wheels + store -> bootable GPT disk image (ESP, root A, root B, data)."""
    box = load_spec(spec)
    from appliance.factory.image.build import build_image

    build_image(box, out, store, signing_key, diagnostics_key=diagnostics_key, cache=cache, test_access=test_access)
