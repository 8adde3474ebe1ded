"""Options shared by several commands come from one settings declaration, with one-line errors."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from appliance.cli.options import SERVE_OPTIONS, settings_command
from appliance.settings import Settings

runner = CliRunner()


def _probe_app() -> tuple[typer.Typer, list[Settings]]:
    seen: list[Settings] = []
    app = typer.Typer()

    @app.command()
    @settings_command(Settings, *SERVE_OPTIONS)
    def serve(settings: Settings) -> None:
        seen.append(settings)

    return app, seen


def test_flags_override_environment_which_overrides_defaults(tmp_path, monkeypatch):
    app, seen = _probe_app()
    monkeypatch.setenv("APPLIANCE_PORT", "9000")
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path))
    assert runner.invoke(app, ["--threads", "3", "--tls", "off"]).exit_code == 0
    s = seen[-1]
    assert (s.port, s.threads, s.tls, s.state_dir, s.host) == (9000, 3, "off", tmp_path, "0.0.0.0")
    assert s.prefill_chunk is None  # the manifest's (SKU's) value applies unless the admin sets one
    assert runner.invoke(app, ["--port", "9100", "--prefill-chunk", "64"]).exit_code == 0
    assert (seen[-1].port, seen[-1].prefill_chunk) == (9100, 64)


def test_serve_and_up_take_the_same_options():
    from typer.main import get_command

    from appliance.cli.main import app

    group = get_command(app)
    opts = {name: {p.name for p in group.commands[name].params} for name in ("serve", "up")}
    assert opts["serve"] == opts["up"] == set(SERVE_OPTIONS)


def test_bad_value_is_one_line_naming_the_flag_and_variable(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "appliance", "serve", "--tls", "maybe", "--state-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--tls" in lines[0] and "APPLIANCE_TLS" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
