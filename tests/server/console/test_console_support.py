"""The diagnostics and support page without a browser: collect, list, read, release, download; the window and
its audit log; what a support token may and may not reach."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from appliance.auth.keys import KeyStore
from appliance.box.firstboot import run_firstboot
from appliance.diagnostics.encryption import keygen
from appliance.diagnostics.vendor import open_bundle
from appliance.server.app import create_app
from appliance.settings import Settings

ORIGIN = "https://testserver"
PASSWORD = "quiet-harbour-lantern-42"


@pytest.fixture()
def admin(tmp_path):
    key, pub = keygen(tmp_path / "vendor")
    settings = Settings(state_dir=tmp_path / "state", store=tmp_path / "no-store", vendor_key=pub)
    code = run_firstboot(settings).setup_code
    with TestClient(create_app(settings), base_url=ORIGIN, follow_redirects=False) as client:
        r = client.post("/console/setup", headers={"Origin": ORIGIN},
                        data={"code": code, "username": "admin", "password": PASSWORD, "confirm": PASSWORD})
        assert r.status_code == 303
        yield client, settings, key


def _csrf(client, path="/console/support") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def _post(client, path, **data):
    return client.post(path, headers={"Origin": ORIGIN}, data={"csrf_token": _csrf(client), **data})


def test_collect_review_read_release_download(admin, tmp_path):
    client, settings, vendor_key = admin
    page = client.get("/console/support")
    assert page.status_code == 200 and "Vendor access is <strong>off</strong>" in page.text
    assert client.post("/console/support/bundles", headers={"Origin": ORIGIN}).status_code == 403
    r = _post(client, "/console/support/bundles")
    assert r.status_code == 303
    bundle_url = r.headers["location"]
    bundle_id = bundle_url.rsplit("/", 1)[-1]
    listing = client.get(bundle_url)
    assert listing.status_code == 200 and "health_record/health.json" in listing.text and "Release" in listing.text
    assert bundle_id in client.get("/console/support").text
    read = client.get(f"{bundle_url}/files/box_config/settings.json")
    assert read.status_code == 200 and "&#34;effective&#34;" in read.text
    assert client.get(f"{bundle_url}/files/../../keys.sqlite").status_code == 404
    assert client.get(f"{bundle_url}/download").status_code == 404
    assert _post(client, f"{bundle_url}/release", ).status_code == 303
    released = client.get(bundle_url)
    assert "Released and encrypted" in released.text
    sealed = client.get(f"{bundle_url}/download")
    assert sealed.status_code == 200 and sealed.content.startswith(b"age-encryption.org/v1")
    path = tmp_path / "dl.tar.gz.age"
    path.write_bytes(sealed.content)
    summary, _ = open_bundle(path, vendor_key, tmp_path / "opened")
    assert summary.bundle == bundle_id


def test_discard_removes_a_staged_bundle(admin):
    client, settings, _ = admin
    bundle_url = _post(client, "/console/support/bundles").headers["location"]
    assert _post(client, f"{bundle_url}/discard").status_code == 303
    assert client.get(bundle_url).status_code == 404


def test_support_window_token_reaches_only_support_routes_and_every_call_is_audited(admin):
    client, settings, _ = admin
    opened = _post(client, "/console/support/window/open", hours="2")
    token = re.search(r"sup-appl-[A-Za-z0-9_-]+", opened.text).group(0)
    assert "Vendor access is <strong>on</strong>" in opened.text
    assert token not in client.get("/console/support").text  # shown once
    vendor = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/support/health", headers=vendor).status_code == 200
    assert client.get("/v1/support/logs", headers=vendor).status_code == 200
    assert client.get("/v1/support/manifests", headers=vendor).status_code == 200
    assert client.post("/v1/support/selftest", headers=vendor).json()["requested"] is True
    assert (settings.state_dir / "health.run-now").exists()
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/metrics"),
                         ("POST", "/v1/embeddings")):
        assert client.request(method, path, headers=vendor, json={}).status_code == 401, path
    fresh = TestClient(client.app, base_url=ORIGIN, follow_redirects=False)
    assert fresh.get("/console/keys", headers=vendor).status_code == 303  # no console either
    assert fresh.get("/console/settings", headers=vendor).status_code == 303
    with KeyStore(settings.keys_db) as keys:
        _, api_key = keys.create("laptop")
    assert client.get("/v1/support/health", headers={"Authorization": f"Bearer {api_key}"}).status_code == 401
    assert _post(client, "/console/support/window/close").status_code == 303
    closed = client.get("/v1/support/health", headers=vendor)
    assert closed.status_code == 401 and "support window" in closed.json()["error"]["message"]
    page = client.get("/console/support").text
    assert "Vendor access is <strong>off</strong>" in page
    audit = client.app.state.support.audit_log()
    assert [(a.method, a.route, a.status) for a in reversed(audit)] == [
        ("GET", "/v1/support/health", 200), ("GET", "/v1/support/logs", 200), ("GET", "/v1/support/manifests", 200),
        ("POST", "/v1/support/selftest", 200), ("GET", "/v1/support/health", 401), ("GET", "/v1/support/health", 401)]
    assert audit[0].outcome.startswith("refused") and audit[-1].outcome == "allowed"
    assert "/v1/support/manifests" in page


def test_window_length_is_bounded(admin):
    client, _, _ = admin
    r = _post(client, "/console/support/window/open", hours="100")
    assert r.status_code == 400 and "at most 72 hours" in r.text


def test_the_vendor_can_fetch_an_encrypted_bundle_and_telemetry_during_a_window(admin, tmp_path):
    client, _, vendor_key = admin
    token = re.search(r"sup-appl-[A-Za-z0-9_-]+", _post(client, "/console/support/window/open", hours="1").text).group(0)
    vendor = {"Authorization": f"Bearer {token}"}
    assert "hardware.json" in client.get("/v1/support/telemetry", headers=vendor).json()
    r = client.post("/v1/support/bundle", headers=vendor)
    assert r.status_code == 200 and r.content.startswith(b"age-encryption.org/v1")
    (tmp_path / "b.age").write_bytes(r.content)
    summary, _ = open_bundle(tmp_path / "b.age", vendor_key, tmp_path / "opened")
    assert summary.files > 10
