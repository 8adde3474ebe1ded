"""``appliance build ...``: the factory commands."""

from __future__ import annotations

from pathlib import Path

import typer
from packaging.version import InvalidVersion, Version

from appliance.spec import load_spec

app = typer.Typer(help="Factory: build the model store, the bootable disk image and update bundles.",
                  no_args_is_help=True)


def _version(value: str | None) -> str | None:
    if value is not None:
        try:
            Version(value)
        except InvalidVersion:
            raise typer.BadParameter(f"{value!r} is not a version (PEP 440, e.g. 0.2.0 or 0.2.0+abc1234)") from None
    return value


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
    version: str | None = typer.Option(None, "--version", help="release version (PEP 440; default: the package "
                                       "version + git commit)", callback=_version),
    slot_mib: int = typer.Option(0, "--slot-mib", min=0, help="size of each root slot, for updates bigger than "
                                 "this root (default: this root + 8 %, which keeps the default image under 1 GiB)"),
) -> None:
    """Debian packages + runtime wheels + store -> bootable GPT disk image (ESP, root A, root B, data)."""
    box = load_spec(spec)
    from appliance.factory.image.build import build_image

    build_image(box, out, store, signing_key, diagnostics_key=diagnostics_key, cache=cache, test_access=test_access,
                version=version, slot_bytes=slot_mib * 2**20)


@app.command("update")
def update(
    spec: Path = typer.Option(Path("appliance.toml"), "--spec", help="box spec (appliance.toml)"),
    out: Path = typer.Option(..., "--out", help="bundle file to write"),
    image: Path | None = typer.Option(None, "--image", help="a directory made by `appliance build image` from this "
                                      "spec (default: build the image now)"),
    store: Path | None = typer.Option(None, "--store", help="a store already built from this spec (default: build it)"),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="vendor ed25519 private key (PEM)"),
    version: str | None = typer.Option(None, "--version", help="release version (PEP 440; default: the package "
                                       "version + git commit)", callback=_version),
    min_version: str = typer.Option("0", "--min-version", help="oldest running version the bundle may be applied on",
                                    callback=_version),
    cache: Path | None = typer.Option(None, "--cache", help="debootstrap and wheel cache "
                                      "(default ~/.cache/appliance/image)"),
) -> None:
    """A signed A/B update bundle: the root image for the other slot (with its store), kernel, initrd, manifest."""
    box = load_spec(spec)
    from appliance.factory.update import build_update

    build_update(box, out, image=image, store=store, signing_key=signing_key, version=version,
                 min_version=min_version, cache=cache)
