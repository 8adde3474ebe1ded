"""Settings come from flags, then APPLIANCE_* variables, then the admin's console settings, then defaults."""

from __future__ import annotations

import json

import pytest

from appliance.errors import ApplianceError
from appliance.settings import (
    Settings,
    load_settings,
    read_admin_settings,
    validate_admin_settings,
    write_admin_settings,
)
from healthcheck.settings import HealthSettings


def test_precedence(tmp_path, monkeypatch):
    (tmp_path / "settings.json").write_text(json.dumps({"port": 9001, "box_name": "Shelf", "threads": 7}))
    s = load_settings(Settings, state_dir=tmp_path)
    assert (s.port, s.box_name, s.threads) == (9001, "Shelf", None)  # threads is not the admin's to set
    monkeypatch.setenv("APPLIANCE_PORT", "9002")
    assert load_settings(Settings, state_dir=tmp_path).port == 9002
    assert load_settings(Settings, state_dir=tmp_path, port=9003).port == 9003


def test_monitor_shares_the_box_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("APPLIANCE_HEALTH_LIVENESS_PERIOD", "0.5")
    h = HealthSettings()
    assert h.state_dir == tmp_path and h.health_db == Settings().health_db and h.liveness_period == 0.5


def test_admin_settings_keep_the_previous_version(tmp_path):
    write_admin_settings(tmp_path, {"box_name": "One"})
    write_admin_settings(tmp_path, {"box_name": "Two", "port": 9443})
    assert read_admin_settings(tmp_path) == {"box_name": "Two", "port": 9443}
    assert read_admin_settings(tmp_path, previous=True) == {"box_name": "One"}


def test_admin_values_are_checked_like_flags(tmp_path):
    assert validate_admin_settings({"port": "9443", "host": "", "box_name": None}) == {"port": 9443}
    for bad in ({"port": "0"}, {"log_level": "loud"}, {"box_name": "a\nb"}):
        with pytest.raises(ApplianceError, match="is not valid"):
            validate_admin_settings(bad)
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(ApplianceError, match="cannot read the admin settings"):
        load_settings(Settings, state_dir=tmp_path)


def test_phone_home_is_off_by_default_and_its_url_is_checked(tmp_path):
    s = load_settings(HealthSettings, state_dir=tmp_path)
    assert (s.phone_home, s.phone_home_url, s.phone_home_minutes) == (False, None, 60)
    with pytest.raises(ApplianceError, match="no vendor URL"):
        validate_admin_settings({"phone_home": True})
    with pytest.raises(ApplianceError, match="must use https"):
        validate_admin_settings({"phone_home": True, "phone_home_url": "http://vendor.example/ph"})
    with pytest.raises(ApplianceError, match="user name or password"):
        validate_admin_settings({"phone_home_url": "https://me:pw@vendor.example/ph"})
    for url in ("https://vendor.example/ph", "http://127.0.0.1:8080/ph", "http://[::1]/ph", "http://localhost/ph"):
        assert validate_admin_settings({"phone_home": True, "phone_home_url": url})["phone_home_url"] == url
    with pytest.raises(ApplianceError, match=r"--phone-home-url .*must look like https://"):
        load_settings(HealthSettings, state_dir=tmp_path, phone_home_url="ftp://vendor.example")


def test_the_monitor_reads_the_admin_s_phone_home_choice(tmp_path):
    write_admin_settings(tmp_path, validate_admin_settings(
        {"phone_home": True, "phone_home_url": "https://vendor.example/ph", "phone_home_minutes": "30"}))
    s = load_settings(HealthSettings, state_dir=tmp_path)
    assert (s.phone_home, s.phone_home_url, s.phone_home_minutes) == (True, "https://vendor.example/ph", 30)
