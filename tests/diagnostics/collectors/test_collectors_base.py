"""A missing tool is recorded as missing, not raised; a slow one is cut off with its time named."""

from appliance.diagnostics.collectors.base import run_command


def test_a_missing_command_is_a_recorded_fact():
    out = run_command("no-such-tool-here", "--version")
    assert out.missing and "not installed here" in out.as_text()


def test_a_slow_command_is_cut_off():
    out = run_command("sleep", "5", timeout=0.2)
    assert out.returncode is None and "no answer within 0.2 s" in out.stderr
