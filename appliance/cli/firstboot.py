"""``appliance firstboot``: make this box's own secrets (run once by appliance-firstboot.service)."""

from __future__ import annotations

import typer
from rich.console import Console

from appliance.cli.options import settings_command
from appliance.settings import Settings


@settings_command(Settings, "state_dir", "tls", "tls_cert", "tls_key")
def firstboot(
    settings: Settings,
    new_setup_code: bool = typer.Option(False, "--new-setup-code",
                                        help="replace a setup code nobody used yet (while no admin exists)"),
) -> None:
    """Make the per-box secrets that are missing (TLS, session secret, monitor credential, setup code)."""
    from appliance.box.firstboot import run_firstboot

    report = run_firstboot(settings, new_setup_code)
    console = Console()
    console.print(f"first boot: made {', '.join(report.made) or 'nothing'}; kept {', '.join(report.kept) or 'nothing'}"
                  f" (in {settings.state_dir})", soft_wrap=True)
    if report.tls_fingerprint:
        console.print(f"TLS certificate SHA-256 fingerprint: {report.tls_fingerprint}", soft_wrap=True)
    if report.setup_code:
        console.print(f"console setup code (one use; open https://THIS-BOX:PORT/console): {report.setup_code}",
                      soft_wrap=True)
