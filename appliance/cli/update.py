"""``appliance update``: apply a signed bundle to the slot that is not running, show both slots, and the trial-boot
check that blesses a new slot (run by appliance-boot-check.service)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from appliance.cli.display import local_time
from appliance.cli.options import settings_command
from appliance.errors import ApplianceError
from appliance.settings import BoxSettings, Settings, load_settings
from appliance.store.signing import load_public_key, trusted_key_path
from appliance.update import handover, slots
from appliance.update.apply import Stage
from appliance.update.apply import apply as apply_bundle
from appliance.update.bootcheck import SystemdServer, boot_check
from appliance.update.handover import ApplyState
from appliance.update.slots import Disk
from appliance.update.status import read_status

app = typer.Typer(help="A/B updates: signed bundles, written to the slot that is not running, tried, blessed or "
                       "rolled back.", no_args_is_help=True)
with_box = settings_command(BoxSettings, "state_dir", "trusted_key")
with_state_dir = settings_command(BoxSettings, "state_dir")


class _Bar:
    """apply's progress as a byte bar per stage."""

    def __init__(self, progress: Progress):
        self.progress, self.task = progress, None

    def stage(self, stage: Stage, what: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.task = self.progress.add_task(what, total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


@app.command("apply")
@with_box
def apply(
    settings: BoxSettings,
    bundle: Annotated[Path, typer.Argument(help="update bundle from the vendor (a file, or a block device)")],
    allow_downgrade: Annotated[bool, typer.Option("--allow-downgrade", help="install a version that is not newer "
                                                  "than the running one")] = False,
    accept_no_rollback: Annotated[bool, typer.Option("--accept-no-rollback", help="apply an update that changes "
                                                     "the state's schema, after which a rollback cannot read it")] = False,
    reboot: Annotated[bool, typer.Option("--reboot", help="reboot into the new slot when it is written")] = False,
) -> None:
    """Verify the bundle's signature and every digest, then write the inactive slot and give it 3 trial boots."""
    key_path, _ = trusted_key_path(settings.trusted_key)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console) as progress:
        done = apply_bundle(bundle, Disk(), settings.state_dir, load_public_key(key_path),
                            allow_downgrade=allow_downgrade, accept_no_rollback=accept_no_rollback,
                            reporter=_Bar(progress))
    typer.echo(f"slot {done.slot.upper()} now holds {done.manifest.version} (was {done.replaced}): "
               f"{done.written / 2**20:.0f} MiB verified and written in {done.seconds:.0f} s. On the next boot it "
               f"gets {slots.TRIES} tries to become ready; otherwise the box goes back to the running version.")
    if reboot:
        typer.echo("rebooting into it")
        subprocess.run(["systemctl", "reboot"], check=True)
    else:
        typer.echo("reboot to try it: `systemctl reboot` (or apply with --reboot)")


@app.command("apply-pending")
@with_box
def apply_pending(settings: BoxSettings) -> None:
    """Apply the bundle the console handed over, reporting progress to it (run as root by appliance-update.service
    when the console leaves a request)."""
    taken = handover.take(settings.state_dir)
    if taken is None:
        typer.echo("no update is waiting")
        return
    request, path = taken
    reporter = handover.ProgressFile(settings.state_dir, request.version)
    try:
        key_path, _ = trusted_key_path(settings.trusted_key)
        done = apply_bundle(path, Disk(), settings.state_dir, load_public_key(key_path), reporter=reporter)
    except ApplianceError as exc:
        reporter.finish(ApplyState.FAILED, str(exc))
        raise
    finally:
        path.unlink(missing_ok=True)
    line = (f"slot {done.slot.upper()} now holds {done.manifest.version}: {done.written / 2**20:.0f} MiB verified and "
            f"written in {done.seconds:.0f} s")
    typer.echo(line)
    if not request.reboot:
        reporter.finish(ApplyState.WRITTEN, line + "; it is tried on the next boot")
        return
    reporter.finish(ApplyState.REBOOTING, line + "; rebooting into it")
    subprocess.run(["systemctl", "reboot"], check=True)


@app.command("status")
@with_state_dir
def status(settings: BoxSettings,
           as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Both slots (version, state, tries left, which one is booted) and how the last update went."""
    report = read_status(Disk(), settings.state_dir)
    if as_json:
        typer.echo(report.model_dump_json())
        return
    table = Table(title="root slots")
    for col in ("slot", "booted", "state", "version", "tries left"):
        table.add_column(col)
    for r in report.slots:
        table.add_row(r.slot.upper(), "yes" if r.booted else "", r.state.value, r.version,
                      "" if r.tries_left is None else str(r.tries_left))
    console = Console()
    console.print(table)
    last = report.last_update
    if last:
        console.print(f"last update: {last.version} to slot {last.slot.upper()} at {local_time(last.applied_at)}: "
                      f"{last.outcome.value}" + (f" ({last.reason})" if last.reason else ""), highlight=False)


@app.command("boot-check")
def check_boot(
    state_dir: Annotated[Path, typer.Option("--state-dir", help="state directory")] = Path("/var/lib/appliance"),
    deadline: Annotated[float, typer.Option("--deadline", help="seconds a slot on trial has to become ready")] = 600.0,
) -> None:
    """On a trial boot: exit 0 when the server is ready in time (the slot is then blessed), 1 otherwise (the unit
    reboots, and the tries run down). On any other boot: note how the last update ended, and always exit 0.

    Nothing is loaded before it knows which boot this is (not even the settings), because a failure on an
    ordinary boot would reboot the box."""

    def server() -> SystemdServer:
        settings = load_settings(Settings, state_dir=state_dir)
        return SystemdServer(settings.local_url(), settings.tls_dir / "cert.pem")

    health_db = BoxSettings.model_construct(state_dir=state_dir).health_db
    verdict = boot_check(Disk(), state_dir, health_db, server, deadline=deadline)
    typer.echo(f"appliance: boot check: {verdict.line}")
    raise typer.Exit(0 if verdict.passed else 1)
