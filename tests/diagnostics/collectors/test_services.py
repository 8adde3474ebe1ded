from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.services import TAIL_BYTES, Services


def test_units_journal_and_log_tails_even_without_systemd(box_settings):
    box_settings.ensure_state_dir()
    (box_settings.state_dir / "server.log").write_text("x" * (TAIL_BYTES + 10) + "last line\n")
    files = Services().collect(Context(box_settings, clock=lambda: 0.0))
    assert files["systemctl-status.txt"].startswith("$ systemctl")
    assert files["journal.txt"].startswith("$ journalctl")
    assert files["server.log"].endswith("last line\n") and len(files["server.log"]) == TAIL_BYTES
    assert "health.log" not in files
