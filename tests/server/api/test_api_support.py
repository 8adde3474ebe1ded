"""The /v1/support routes themselves: an expired or closed window and a missing or foreign token get 401 in
OpenAI's error shape, a support token reaches nothing but these routes, and every call to them is audited.

The console's side (opening, closing, the page) is in tests/server/console/test_console_support.py.
"""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from appliance.auth.keys import KeyStore
from appliance.server.app import create_app
from appliance.settings import Settings
from wait import wait_until

ROUTES = (("GET", "/v1/support/health"), ("GET", "/v1/support/telemetry"), ("GET", "/v1/support/logs"),
          ("GET", "/v1/support/manifests"), ("POST", "/v1/support/selftest"), ("POST", "/v1/support/bundle"))


@pytest.fixture()
def box(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", store=tmp_path / "no-store")
    with TestClient(create_app(settings), base_url="https://testserver", follow_redirects=False) as client:
        # the store is missing: let the loader fail and finish while the app's loop still runs
        wait_until(lambda: not any(t.name == "runtime-load" for t in threading.enumerate()), what="the store refused")
        now = [1_750_000_000.0]
        client.app.state.support.clock = lambda: now[0]
        yield client, now


def _refused(r) -> None:
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] in ("support_window_closed", "invalid_api_key") and body["error"]["message"]


def test_an_expired_window_is_refused_on_every_support_route(box):
    client, now = box
    store = client.app.state.support
    _, token = store.open(1, by="test")
    vendor = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/support/health", headers=vendor).status_code == 200
    now[0] += 3600
    for method, path in ROUTES:
        r = client.request(method, path, headers=vendor)
        _refused(r)
        assert r.json()["error"]["code"] == "support_window_closed" and "ran out" in r.json()["error"]["message"]
    audit = list(reversed(store.audit_log()))
    assert [(a.method, a.route, a.status) for a in audit] == [("GET", "/v1/support/health", 200)] + [
        (method, path, 401) for method, path in ROUTES]
    assert audit[0].window_id is not None and all(a.window_id is None and a.outcome.startswith("refused")
                                                  for a in audit[1:])


def test_a_closed_window_a_missing_token_and_an_api_key_are_refused_and_audited(box):
    client, _ = box
    store = client.app.state.support
    _, token = store.open(4, by="test")
    store.close_window(by="test")
    with KeyStore(client.app.state.settings.keys_db) as keys:
        _, api_key = keys.create("laptop")
    for headers in ({"Authorization": f"Bearer {token}"}, {}, {"Authorization": f"Bearer {api_key}"},
                    {"Authorization": "Basic dXNlcjpwYXNz"}):
        _refused(client.get("/v1/support/health", headers=headers))
    assert [(a.route, a.status) for a in store.audit_log()] == [("/v1/support/health", 401)] * 4


def test_a_support_token_reaches_no_inference_admin_or_key_route(box):
    client, _ = box
    store = client.app.state.support
    _, token = store.open(4, by="test")
    vendor = {"Authorization": f"Bearer {token}"}
    for method, path in (("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
                         ("POST", "/v1/images/generations"), ("GET", "/v1/models"), ("GET", "/v1/usage"),
                         ("GET", "/health/monitor"), ("GET", "/metrics"), ("GET", "/readyz")):
        _refused(client.request(method, path, headers=vendor, json={"model": "m", "messages": [], "prompt": "x"}))
    for method, path in (("GET", "/console/keys"), ("GET", "/console/settings"), ("GET", "/console/support"),
                         ("POST", "/console/keys"), ("POST", "/console/settings/phone-home"),
                         ("POST", "/console/support/window/open")):
        r = client.request(method, path, headers={**vendor, "Origin": "https://testserver"})
        assert r.status_code in (303, 401, 403), (path, r.status_code)
    assert store.audit_log() == []  # none of those is a support call
    assert client.get("/v1/support/manifests", headers=vendor).status_code == 200
    assert [(a.route, a.status, a.outcome) for a in store.audit_log()] == [("/v1/support/manifests", 200, "allowed")]
