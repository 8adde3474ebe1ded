"""The console's routes without a browser or a model store: claiming, sign-in, CSRF, settings, TLS upload.

The app starts on a store that does not exist, so the API is not ready but
the console works, as it must on a box whose engines failed to load.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from fastapi.testclient import TestClient

from appliance.box.firstboot import run_firstboot
from appliance.server.app import create_app
from appliance.settings import Settings, read_admin_settings

ORIGIN = "https://testserver"
PASSWORD = "quiet-harbour-lantern-42"


@pytest.fixture()
def box(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", store=tmp_path / "no-store")
    code = run_firstboot(settings).setup_code
    with TestClient(create_app(settings), base_url=ORIGIN, follow_redirects=False) as client:
        yield client, settings, code


def _claim(client, code):
    return client.post("/console/setup", headers={"Origin": ORIGIN},
                       data={"code": code, "username": "admin", "password": PASSWORD, "confirm": PASSWORD})


def _csrf(client, path="/console/settings") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def test_unclaimed_box_leads_to_setup_with_strict_headers(box):
    client, _, _ = box
    r = client.get("/console/keys")
    assert r.status_code == 303 and r.headers["location"] == "/console/setup"
    page = client.get("/console/setup")
    assert page.status_code == 200 and "Setup code" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert client.get("/").headers["location"] == "/console"


def test_setup_refuses_foreign_origin_wrong_codes_and_then_locks(box):
    client, _, code = box
    forged = client.post("/console/setup", headers={"Origin": "https://evil.example"},
                         data={"code": code, "username": "admin", "password": PASSWORD, "confirm": PASSWORD})
    assert forged.status_code == 403
    for _ in range(5):
        r = client.post("/console/setup", headers={"Origin": ORIGIN},
                        data={"code": "AAAA-BBBB-CCCC", "password": PASSWORD, "confirm": PASSWORD})
        assert r.status_code == 400 and "not right" in r.text
    locked = _claim(client, code)
    assert locked.status_code == 429 and "Too many wrong setup codes" in locked.text


def test_claim_sets_a_strict_session_cookie_and_csrf_guards_changes(box):
    client, settings, code = box
    r = _claim(client, code)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
    assert client.get("/console").status_code == 200
    no_token = client.post("/console/settings", headers={"Origin": ORIGIN}, data={"box_name": "x"})
    assert no_token.status_code == 403
    ok = client.post("/console/settings", headers={"Origin": ORIGIN},
                     data={"csrf_token": _csrf(client), "box_name": "Shelf 3", "log_level": "warning",
                           "host": settings.host, "port": str(settings.port)})
    assert ok.status_code == 200 and "Saved and applied" in ok.text
    assert read_admin_settings(settings.state_dir)["box_name"] == "Shelf 3"


def test_bad_settings_are_refused_and_nothing_is_saved(box):
    client, settings, code = box
    _claim(client, code)
    r = client.post("/console/settings", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "log_level": "info", "port": "99999"})
    assert r.status_code == 400 and "port" in r.text
    assert read_admin_settings(settings.state_dir) == {}


def test_a_new_port_restarts_the_server_with_the_reason_on_record(box):
    client, settings, code = box
    _claim(client, code)
    r = client.post("/console/settings", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "log_level": "info", "host": settings.host, "port": "9443"})
    assert r.status_code == 200 and "restarts now" in r.text
    assert client.app.state.restart_requested
    assert "settings changed in the console: port" in (settings.state_dir / "server.restart-requested").read_text()


def _pem_pair(tmp_path, name):
    key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "30", "-subj", f"/CN={name}"],
                   check=True, capture_output=True)
    return cert, key


def test_tls_upload_is_validated_before_it_is_installed(box, tmp_path):
    client, settings, code = box
    _claim(client, code)
    cert, key = _pem_pair(tmp_path, "one")
    _, other_key = _pem_pair(tmp_path, "two")
    mismatched = client.post("/console/settings/tls", headers={"Origin": ORIGIN}, data={"csrf_token": _csrf(client)},
                             files={"cert": cert.read_bytes(), "key": other_key.read_bytes()})
    assert mismatched.status_code == 400 and "does not belong" in mismatched.text
    garbage = client.post("/console/settings/tls", headers={"Origin": ORIGIN}, data={"csrf_token": _csrf(client)},
                          files={"cert": b"not a certificate", "key": key.read_bytes()})
    assert garbage.status_code == 400 and "not a PEM certificate" in garbage.text
    assert "tls_cert" not in read_admin_settings(settings.state_dir)
    good = client.post("/console/settings/tls", headers={"Origin": ORIGIN}, data={"csrf_token": _csrf(client)},
                       files={"cert": cert.read_bytes(), "key": key.read_bytes()})
    assert good.status_code == 200 and "Certificate installed" in good.text
    saved = read_admin_settings(settings.state_dir)
    assert saved["tls_cert"].endswith("installed/cert.pem") and client.app.state.restart_requested


def test_password_change_signs_everyone_out(box):
    client, _, code = box
    _claim(client, code)
    r = client.post("/console/settings/password", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "current": PASSWORD, "new": "amber-kettle-orchard-91",
                          "confirm": "amber-kettle-orchard-91"})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert client.get("/console").headers["location"].startswith("/console/login")


def test_settings_fixed_by_a_flag_are_shown_fixed_and_refused(tmp_path):
    from appliance.settings import load_settings

    settings = load_settings(Settings, state_dir=tmp_path / "state", store=tmp_path / "no-store", port=9443)
    code = run_firstboot(settings).setup_code
    with TestClient(create_app(settings), base_url=ORIGIN, follow_redirects=False) as client:
        _claim(client, code)
        page = client.get("/console/settings").text
        assert re.search(r'id="port"[^>]*disabled', page) and "--port" in page
        r = client.post("/console/settings", headers={"Origin": ORIGIN},
                        data={"csrf_token": _csrf(client), "log_level": "info", "port": "9000"})
        assert r.status_code == 400 and "port is set on this box" in r.text and "command line" in r.text
        assert not client.app.state.restart_requested


def test_console_json_calls_without_a_session_get_401_not_a_login_page(box):
    client, _, code = box
    _claim(client, code)
    client.cookies.clear()
    r = client.get("/console/api/series?window=1h")
    assert r.status_code == 401 and r.json()["error"]["code"] == "session_expired"
    assert client.get("/console/keys").headers["location"].startswith("/console/login")


def test_cors_origins_are_checked_saved_and_applied_by_a_restart(box):
    client, settings, code = box
    _claim(client, code)
    bad = client.post("/console/settings", headers={"Origin": ORIGIN},
                      data={"csrf_token": _csrf(client), "log_level": "info", "cors_origins": "192.168.1.20:3000/x"})
    assert bad.status_code == 400 and "not an origin" in bad.text and not client.app.state.restart_requested
    ok = client.post("/console/settings", headers={"Origin": ORIGIN},
                     data={"csrf_token": _csrf(client), "log_level": "info",
                           "cors_origins": "http://192.168.1.20:3000\nhttps://tools.lan"})
    assert ok.status_code == 200 and client.app.state.restart_requested
    assert read_admin_settings(settings.state_dir)["cors_origins"] == ["http://192.168.1.20:3000", "https://tools.lan"]


def test_phone_home_is_off_then_turned_on_with_a_checked_url(box):
    client, settings, code = box
    _claim(client, code)
    page = client.get("/console/settings").text
    assert 'name="phone_home" value="on">' in page and "Last attempt: none" in page
    r = client.post("/console/settings/phone-home", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "phone_home": "on", "phone_home_url": "http://vendor.example/ph",
                          "phone_home_minutes": "60"})
    assert r.status_code == 400 and "must use https" in r.text and read_admin_settings(settings.state_dir) == {}
    r = client.post("/console/settings/phone-home", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "phone_home": "on", "phone_home_url": "https://vendor.example/ph",
                          "phone_home_minutes": "30"})
    assert r.status_code == 200 and "first summary" in r.text and not client.app.state.restart_requested
    assert read_admin_settings(settings.state_dir) == {"phone_home": True, "phone_home_url": "https://vendor.example/ph",
                                                       "phone_home_minutes": 30}
    assert 'value="on" checked' in r.text and 'value="https://vendor.example/ph"' in r.text
    r = client.post("/console/settings", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "log_level": "info", "box_name": "Shelf"})
    assert r.status_code == 200 and read_admin_settings(settings.state_dir)["phone_home"] is True
    r = client.post("/console/settings/phone-home", headers={"Origin": ORIGIN},
                    data={"csrf_token": _csrf(client), "phone_home_url": "https://vendor.example/ph"})
    assert "nothing is sent" in r.text and read_admin_settings(settings.state_dir)["phone_home"] is False
