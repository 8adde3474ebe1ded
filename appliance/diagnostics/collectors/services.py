"""Service status and the recent journal of the appliance's units, and the logs ``appliance up`` writes."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, run_command

UNITS = ("appliance-server.service", "appliance-health.service", "appliance-firstboot.service")
LOG_FILES = ("server.log", "health.log")
TAIL_BYTES = 256 * 1024


class Services(Collector):
    name = "services"
    gathers = "systemctl status and the last day of journal of the appliance units; tails of server.log and health.log"

    def collect(self, ctx: Context) -> Files:
        files: Files = {"systemctl-status.txt": run_command("systemctl", "status", "--no-pager", "--lines=0",
                                                           *UNITS).as_text()}
        since = f"-{int(ctx.journal_hours * 3600)}s"
        journal_args = [a for u in UNITS for a in ("-u", u)]
        files["journal.txt"] = run_command("journalctl", "--no-pager", "-o", "short-iso", "--since", since,
                                           "-n", "5000", *journal_args, timeout=15).as_text()
        for name in LOG_FILES:
            path = ctx.settings.state_dir / name
            if path.is_file():
                with path.open("rb") as fh:
                    fh.seek(max(0, path.stat().st_size - TAIL_BYTES))
                    files[name] = fh.read().decode(errors="replace")
        return files
