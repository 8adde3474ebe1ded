"""keygen, collect, open through the real command; a wrong key, a missing key and a discarded review."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=REPO, capture_output=True, text=True,
                          input=input, timeout=120, env={**os.environ, "COLUMNS": "160"})


def _box(box_settings) -> list[str]:
    return ["--state-dir", str(box_settings.state_dir), "--store", str(box_settings.store)]


def test_keygen_collect_open_round_trip(box_settings, tmp_path):
    made = _run("diagnostics", "keygen", "--out", str(tmp_path / "acme"))
    assert made.returncode == 0, made.stderr
    key, pub = tmp_path / "acme.key", tmp_path / "acme.pub"
    assert oct(key.stat().st_mode & 0o777) == "0o600" and pub.read_text().startswith("age1")
    out = tmp_path / "bundle.tar.gz.age"
    collected = _run("diagnostics", "collect", *_box(box_settings), "--vendor-key", str(pub), "--out", str(out))
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.strip() == str(out) and "health_record/health.json" in collected.stderr
    assert out.read_bytes().startswith(b"age-encryption.org/v1")
    opened = _run("diagnostics", "open", str(out), "--key", str(key), "--out", str(tmp_path / "opened"))
    assert opened.returncode == 0, opened.stderr
    assert "box: unknown" in opened.stdout and "versions: appliance" in opened.stdout
    root = next((tmp_path / "opened").iterdir())
    assert json.loads((root / "summary.json").read_text())["store_sku"] == "cpu-x86_64-avx512"


def test_a_wrong_key_cannot_open_and_says_so_in_one_line(box_settings, vendor_pair, tmp_path):
    out = tmp_path / "b.age"
    assert _run("diagnostics", "collect", *_box(box_settings), "--vendor-key", str(vendor_pair[1]), "--out",
                str(out)).returncode == 0
    assert _run("diagnostics", "keygen", "--out", str(tmp_path / "other")).returncode == 0
    refused = _run("diagnostics", "open", str(out), "--key", str(tmp_path / "other.key"), "--out", str(tmp_path / "o"))
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "cannot be opened with" in refused.stderr and str(tmp_path / "other.key") in refused.stderr
    assert not list((tmp_path / "o").rglob("*.json"))


def test_no_vendor_key_installed_fails_before_collecting(box_settings, tmp_path):
    missing = tmp_path / "etc/vendor-diagnostics.pub"
    r = _run("diagnostics", "collect", *_box(box_settings), "--vendor-key", str(missing))
    assert r.returncode != 0 and "Traceback" not in r.stderr and str(missing) in r.stderr
    assert not (box_settings.state_dir / "diagnostics").exists()


def test_review_reads_a_file_and_can_discard(box_settings, vendor_pair, tmp_path):
    out = tmp_path / "b.age"
    r = _run("diagnostics", "collect", *_box(box_settings), "--vendor-key", str(vendor_pair[1]), "--out", str(out), "--review",
             input="1\nq\n")
    assert r.returncode == 1 and "discarded bundle" in r.stderr and '"box"' in r.stderr
    assert not out.exists()
    r = _run("diagnostics", "collect", *_box(box_settings), "--vendor-key", str(vendor_pair[1]), "--out", str(out), "--review",
             input="r\n")
    assert r.returncode == 0 and out.exists()


def test_support_open_status_close(box_settings):
    opened = _run("support", "open", "--hours", "1", "--state-dir", str(box_settings.state_dir))
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip().splitlines()[-1].split()[-1].startswith("sup-appl-")
    assert "vendor access: on" in _run("support", "status", "--state-dir", str(box_settings.state_dir)).stdout
    too_long = _run("support", "open", "--hours", "100", "--state-dir", str(box_settings.state_dir))
    assert too_long.returncode != 0 and "at most 72 hours" in too_long.stderr and "Traceback" not in too_long.stderr
    assert "Closed support window" in _run("support", "close", "--state-dir", str(box_settings.state_dir)).stdout
    assert "vendor access: off" in _run("support", "status", "--state-dir", str(box_settings.state_dir)).stdout


def test_phone_home_is_off_until_turned_on_and_bad_input_is_one_line(box_settings):
    state = ["--state-dir", str(box_settings.state_dir)]
    assert _run("diagnostics", "phone-home", *state).stdout.strip() == "phone-home: off"
    for bad in (["--on"], ["--on", "--url", "http://vendor.example/ph"], ["--minutes", "0"]):
        r = _run("diagnostics", "phone-home", *bad, *state)
        assert r.returncode != 0 and "Traceback" not in r.stderr and "settings.json" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (box_settings.state_dir / "settings.json").exists()
    on = _run("diagnostics", "phone-home", "--on", "--url", "https://vendor.example/ph", "--minutes", "30", *state)
    assert on.returncode == 0 and "on, every 30 min to https://vendor.example/ph" in on.stdout, on.stderr
    saved = json.loads((box_settings.state_dir / "settings.json").read_text())
    assert saved == {"phone_home": True, "phone_home_url": "https://vendor.example/ph", "phone_home_minutes": 30}
    health = _run("health", *state)
    assert "phone-home: on, every 30 min to https://vendor.example/ph; last: nothing sent yet" in health.stdout
    assert json.loads(_run("health", "--json", *state).stdout)["phone_home"]["on"] is True
    assert _run("diagnostics", "phone-home", "--off", *state).stdout.strip() == "phone-home: off"
