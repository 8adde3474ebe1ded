"""CORS: browsers on listed LAN origins may call the API; by default no other origin than the box's own."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from conftest import CHAT_MODEL, needs_avx512, start_server, stop_server
from appliance.errors import ApplianceError
from appliance.server.app import create_app
from appliance.settings import Settings, load_settings

APP_ORIGIN = "http://192.168.1.20:3000"
PREFLIGHT = {"Origin": APP_ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os"}


def _client(tmp_path, origins: list[str]) -> TestClient:
    return TestClient(create_app(Settings(state_dir=tmp_path / "state", cors_origins=origins)))


def test_listed_origin_gets_preflight_and_headers_others_do_not(tmp_path):
    c = _client(tmp_path, [APP_ORIGIN])
    ok = c.options("/v1/chat/completions", headers=PREFLIGHT)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in ok.headers  # bearer keys only, never the console's cookie
    other = c.options("/v1/chat/completions", headers={**PREFLIGHT, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    plain = c.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert plain.headers["access-control-allow-origin"] == APP_ORIGIN


def test_by_default_no_cross_origin_access(tmp_path):
    c = _client(tmp_path, [])
    r = c.options("/v1/chat/completions", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in r.headers and r.status_code >= 400
    assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": APP_ORIGIN}).headers


def test_a_setting_that_is_not_an_origin_is_refused(tmp_path):
    with pytest.raises(ApplianceError, match="not an origin"):
        load_settings(Settings, state_dir=tmp_path / "state", cors_origins=["192.168.1.20:3000/path"])


@needs_avx512
def test_a_real_server_set_by_environment_answers_a_browser_preflight(default_store, tmp_path):
    s = start_server(default_store, tmp_path / "state", env={"APPLIANCE_CORS_ORIGINS": f'["{APP_ORIGIN}"]'})
    try:
        pre = httpx.options(f"{s.url}/v1/chat/completions", headers=PREFLIGHT, timeout=10)
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == APP_ORIGIN
        r = httpx.post(f"{s.url}/v1/chat/completions", timeout=60, headers={**s.headers(), "Origin": APP_ORIGIN},
                       json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == APP_ORIGIN
    finally:
        stop_server(s)
