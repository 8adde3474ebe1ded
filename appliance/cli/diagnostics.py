"""``appliance diagnostics``: collect a redacted, encrypted bundle on the box; keygen and open on the vendor's side."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box as rich_box
from rich.console import Console
from rich.table import Table

from appliance.cli.options import settings_command
from appliance.diagnostics.bundle import BundleIndex, CollectorOutcome
from appliance.diagnostics.collect import collect as collect_bundle
from appliance.diagnostics.collect import map_path
from appliance.diagnostics.encryption import keygen as make_keypair
from appliance.diagnostics.encryption import load_recipient
from appliance.diagnostics.phonehome import describe as describe_phone_home
from appliance.diagnostics.review import discard, read_file, release
from appliance.diagnostics.vendor import open_bundle
from appliance.errors import ApplianceError
from appliance.settings import (ADMIN_FILE, PHONE_HOME_FIELDS, BoxSettings, load_settings, read_admin_settings,
                                validate_admin_settings, write_admin_settings)

app = typer.Typer(help="Diagnostics for the vendor: redacted, reviewed, encrypted to the vendor's key.",
                  no_args_is_help=True)

_OUTCOME_STYLE = {CollectorOutcome.OK: "green", CollectorOutcome.FAILED: "red", CollectorOutcome.TIMED_OUT: "yellow"}


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _contents(index: BundleIndex) -> Table:
    table = Table(title=f"bundle {index.id}: {len(index.files)} files, {_size(index.total_size)}",
                  box=rich_box.SIMPLE_HEAD)
    for col in ("#", "file", "size", "collector"):
        table.add_column(col, justify="right" if col in ("#", "size") else "left")
    for n, f in enumerate(index.files, 1):
        table.add_row(str(n), f.path, _size(f.size), f.collector)
    return table


def _review(console: Console, settings: BoxSettings, index: BundleIndex) -> bool:
    """Show the listing; let the admin read files by number; True to release."""
    while True:
        console.print(_contents(index))
        answer = typer.prompt("Number to read a file, 'r' to release (encrypt) it, 'q' to discard", default="q")
        answer = answer.strip().lower()
        if answer == "r":
            return True
        if answer == "q":
            return False
        if answer.isdigit() and 1 <= int(answer) <= len(index.files):
            entry = index.files[int(answer) - 1]
            console.rule(f"{entry.path} ({entry.collector})")
            console.print(read_file(settings, index.id, entry.path), markup=False, highlight=False)
            console.rule()
        else:
            console.print(f"no file {answer!r}; pick 1-{len(index.files)}", highlight=False)


@app.command()
@settings_command(BoxSettings, "state_dir", "store", "vendor_key")
def collect(
    settings: BoxSettings,
    out: Annotated[Path | None, typer.Option("--out", help="where to write the encrypted bundle (a file or a "
                                             "folder; default: the state dir's diagnostics/released/)")] = None,
    review: Annotated[bool, typer.Option("--review", help="list the contents and read files before releasing")] = False,
) -> None:
    """Gather, redact, list and encrypt a bundle for the vendor; nothing is sent anywhere."""
    load_recipient(settings.vendor_key)  # a missing key fails before minutes of collecting
    console = Console(stderr=True)
    start = time.monotonic()
    with console.status("collecting") as status:
        def progress(collector, record) -> None:
            if record is None:
                status.update(f"collecting: {collector.name} ({collector.gathers})")
            else:
                style = _OUTCOME_STYLE[record.outcome]
                note = f" - {record.error}" if record.error else ""
                console.print(f"  [{style}]{record.outcome.value:>9}[/] {record.name} ({record.seconds:.1f} s, "
                              f"{len(record.files)} files){note}", highlight=False)

        index, _ = collect_bundle(settings, progress=progress)
    if review:
        if not _review(console, settings, index):
            discard(settings, index.id)
            console.print(f"discarded bundle {index.id}; nothing was written for the vendor")
            raise typer.Exit(1)
    else:
        console.print(_contents(index))
    path = release(settings, index.id, settings.vendor_key, out)
    failed = index.failed()
    console.print(f"[bold]bundle[/] {path} ({_size(path.stat().st_size)} encrypted, {len(index.files)} files, "
                  f"{_size(index.total_size)} before compression) in {time.monotonic() - start:.1f} s; "
                  f"{sum(index.redaction.replaced.values())} values redacted "
                  f"(the map stays on the box: {map_path(settings, index.id)})"
                  + (f"; incomplete: {', '.join(c.name for c in failed)}" if failed else ""), highlight=False)
    typer.echo(str(path))


@app.command("phone-home")
@settings_command(BoxSettings, "state_dir")
def phone_home(
    settings: BoxSettings,
    on: Annotated[Optional[bool], typer.Option("--on/--off", help="send the redacted health summary to the vendor, "
                                            "or stop (saved like the console's settings page)")] = None,
    url: Annotated[str | None, typer.Option("--url", help="the vendor's URL (https)")] = None,
    minutes: Annotated[int | None, typer.Option("--minutes", help="minutes between two summaries")] = None,
) -> None:
    """Show or change phone-home (off by default); the health monitor follows the change by itself."""
    given = {k: v for k, v in zip(PHONE_HOME_FIELDS, (on, url, minutes)) if v is not None}
    if given:
        settings.ensure_state_dir()
        saved = read_admin_settings(settings.state_dir)
        try:
            admin = validate_admin_settings({**saved, **given})
        except ApplianceError as exc:
            raise ApplianceError(f"{exc}; nothing was saved to {settings.state_dir / ADMIN_FILE}: give --url "
                                 "https://... (plain http only to loopback), --minutes 1 or more, or --off") from None
        write_admin_settings(settings.state_dir, admin)
        settings = load_settings(BoxSettings, state_dir=settings.state_dir)
    typer.echo(f"phone-home: {describe_phone_home(settings)}")


@app.command("open")
def open_(
    bundle: Annotated[Path, typer.Argument(help="the .tar.gz.age file a box released")],
    key: Annotated[Path, typer.Option("--key", help="the vendor's private key (PREFIX.key from keygen)")],
    out: Annotated[Path, typer.Option("--out", help="folder to unpack into")],
) -> None:
    """Vendor side: decrypt, unpack and summarise a bundle."""
    summary, root = open_bundle(bundle, key, out)
    console = Console()
    color = {"ok": "green", "degraded": "yellow", "failed": "red"}.get(summary.box_status, "white")
    console.print(f"bundle {summary.bundle} from {summary.box}, collected {summary.created_at}", highlight=False)
    console.print(f"box: [bold {color}]{summary.box_status}[/] - {summary.box_reason}", highlight=False)
    for c in summary.failing_checks:
        console.print(f"  {c.status}: {c.name} - {c.reason}", highlight=False)
    console.print(f"restarts: {summary.restart_count}", highlight=False)
    for r in summary.recent_restarts:
        console.print(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r.at))}Z {r.reason}", highlight=False)
    console.print(f"versions: appliance {summary.appliance_version}; {summary.os or 'unknown OS'}; kernel "
                  f"{summary.kernel or '?'}; store SKU {summary.store_sku or '-'} "
                  f"({'matches' if summary.host_matches_sku else 'does not match' if summary.host_matches_sku is False else 'unknown'})",
                  highlight=False)
    for c in summary.incomplete_collectors:
        console.print(f"[yellow]collector {c.name} {c.outcome.value}[/]: {c.error}", highlight=False)
    console.print(f"{summary.files} files, {_size(summary.bytes)} in {root}", highlight=False)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option("--out", help="PREFIX: writes PREFIX.key (0600, keep it) and PREFIX.pub")],
) -> None:
    """Vendor side: make the key pair; PREFIX.pub goes into the image as /etc/appliance/vendor-diagnostics.pub."""
    key, pub = make_keypair(out)
    typer.echo(f"private key {key} (0600; keep it off the boxes), public key {pub} "
               "(install as /etc/appliance/vendor-diagnostics.pub)")


