"""The probes a router or Kubernetes uses: no credentials, status code only; details only with a key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from appliance.server.app import create_app
from appliance.settings import Settings


@pytest.fixture()
def app(tmp_path):
    return create_app(Settings(state_dir=tmp_path / "state"))


@pytest.fixture()
def c(app) -> TestClient:
    return TestClient(app)  # no lifespan: the runtime stays "loading", as while the engines load


def _key(app) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.keys.create('probe-tests')[1]}"}


@pytest.mark.parametrize("path", ["/health", "/readyz"])
def test_probe_says_not_ready_while_loading_and_ready_after_without_credentials(app, c, path):
    loading = c.get(path)
    assert loading.status_code == 503 and loading.content == b""
    app.state.runtime.state = "ready"
    ready = c.get(path)
    assert ready.status_code == 200 and ready.content == b""


@pytest.mark.parametrize("path", ["/health", "/readyz"])
def test_probe_leaks_nothing_about_a_failed_self_test(app, c, path):
    app.state.runtime.state, app.state.runtime.reason = "failed", "self-test of smollm2: secret-detail"
    r = c.get(path)
    assert r.status_code == 503 and r.content == b""


def test_readyz_with_a_key_gives_the_details_and_a_bad_key_is_refused(app, c):
    app.state.runtime.state, app.state.runtime.reason = "failed", "self-test of smollm2 failed"
    r = c.get("/readyz", headers=_key(app))
    assert r.status_code == 503 and r.json()["state"] == "failed" and "self-test" in r.json()["reason"]
    bad = c.get("/readyz", headers={"Authorization": "Bearer sk-appl-deadbeef-wrong"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"


def test_the_monitor_view_moved_to_health_monitor_and_needs_a_key(app, c):
    assert c.get("/health/monitor").status_code == 401
    r = c.get("/health/monitor", headers=_key(app))
    assert r.status_code == 200 and {"box", "checks"} <= set(r.json())


def test_openapi_lists_the_probes_as_status_codes_without_a_body(c):
    paths = c.get("/openapi.json").json()["paths"]
    for path in ("/health", "/readyz"):
        responses = paths[path]["get"]["responses"]
        assert {"200", "503"} <= set(responses)
        assert "content" not in responses["200"] and "content" not in responses["503"]
    assert "401" in paths["/readyz"]["get"]["responses"] and "401" in paths["/health/monitor"]["get"]["responses"]
    assert "security" not in paths["/health"]["get"]
