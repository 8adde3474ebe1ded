"""``appliance firstboot``: make this box's own secrets (run once by appliance-firstboot.service)."""

from __future__ import annotations

from rich.console import Console

from appliance.cli.options import settings_command
from appliance.settings import Settings


@settings_command(Settings, "state_dir", "tls", "tls_cert", "tls_key")
def firstboot(settings: Settings) -> None:
    """Make the per-box secrets that are missing (TLS key, the monitor's credential); safe to run again."""
    from appliance.box.firstboot import run_firstboot

    report = run_firstboot(settings)
    console = Console()
    console.print(f"first boot: made {', '.join(report.made) or 'nothing'}; kept {', '.join(report.kept) or 'nothing'}"
                  f" (in {settings.state_dir})", soft_wrap=True)
    if report.tls_fingerprint:
        console.print(f"TLS certificate SHA-256 fingerprint: {report.tls_fingerprint}", soft_wrap=True)
