"""First boot makes each per-box secret once, and a second run keeps them."""

from __future__ import annotations

import stat

from appliance.auth.keys import MONITOR_KEY_NAME, KeyStore
from appliance.box.firstboot import run_firstboot
from appliance.box.supervisor import first_key
from appliance.settings import Settings
from healthcheck.client import monitor_key


def test_makes_then_keeps_the_secrets(tmp_path):
    s = Settings(state_dir=tmp_path / "state")
    first = run_firstboot(s)
    assert first.made == ["TLS certificate", "session secret", "monitor credential", "setup code"]
    assert first.tls_fingerprint and first.setup_code
    secret = monitor_key(s)
    assert stat.S_IMODE(s.monitor_key_file.stat().st_mode) == 0o600
    with KeyStore(s.keys_db) as keys:
        assert keys.authenticate(secret).name == MONITOR_KEY_NAME
    again = run_firstboot(s)
    assert again.made == [] and again.tls_fingerprint == first.tls_fingerprint and again.setup_code is None
    assert monitor_key(s) == secret and s.firstboot_marker.is_file()


def test_a_revoked_monitor_credential_is_replaced(tmp_path):
    s = Settings(state_dir=tmp_path, tls="off")
    run_firstboot(s)
    old = monitor_key(s)
    with KeyStore(s.keys_db) as keys:
        keys.revoke(keys.authenticate(old).id)
    assert run_firstboot(s).made == ["monitor credential"]
    assert monitor_key(s) != old


def test_monitor_without_credential_says_how_to_fix(tmp_path):
    import pytest

    from appliance.errors import ApplianceError

    with pytest.raises(ApplianceError, match="run `appliance firstboot"):
        monitor_key(Settings(state_dir=tmp_path))


def test_up_still_gives_the_admin_a_first_key(tmp_path):
    s = Settings(state_dir=tmp_path, tls="off")
    run_firstboot(s)
    key = first_key(s)
    assert key is not None and first_key(s) is None
