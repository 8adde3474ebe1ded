"""Software update in the console, without a browser: an admin's upload is checked and handed to the apply
service; a refused bundle is deleted with its reason in OpenAI's error shape; nothing moves without a session and
the page's CSRF token; one update at a time."""

from __future__ import annotations

import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from fake_box import box  # noqa: F401  (the fixture)
from appliance.box.firstboot import run_firstboot
from appliance.server.app import create_app
from appliance.settings import Settings
from appliance.update import handover
from appliance.update.handover import ApplyState

ORIGIN = "https://testserver"
PASSWORD = "quiet-harbour-lantern-42"


@pytest.fixture()
def console(box, tmp_path):
    key = tmp_path / "vendor.pub"
    key.write_bytes(box.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
    settings = Settings(state_dir=box.state_dir, store=tmp_path / "no-store", trusted_key=key)
    code = run_firstboot(settings).setup_code
    app = create_app(settings)
    app.state.update_disk = box.disk
    with TestClient(app, base_url=ORIGIN, follow_redirects=False) as client:
        client.post("/console/setup", headers={"Origin": ORIGIN},
                    data={"code": code, "username": "admin", "password": PASSWORD, "confirm": PASSWORD})
        page = client.get("/console/settings")
        csrf = re.search(r'data-csrf="([^"]+)"', page.text).group(1)
        yield client, csrf, page


def _put(client, csrf, data: bytes, reboot=True):
    return client.put(f"/console/api/update?reboot={str(reboot).lower()}", content=data,
                      headers={"Origin": ORIGIN, "x-csrf-token": csrf, "Content-Type": "application/octet-stream"})


def test_settings_page_shows_the_running_version_and_the_upload(console):
    _, _, page = console
    assert 'id="update-running">0.1.0<' in page.text
    assert 'id="update-form"' in page.text and "/console/static/js/update.js" in page.text


def test_a_good_bundle_is_handed_to_the_apply_service(console, box):
    client, csrf, _ = console
    made = box.bundle(version="0.2.0")
    r = _put(client, csrf, made.read_bytes())
    assert r.status_code == 202, r.text
    assert r.json() == {"version": "0.2.0", "size": r.json()["size"], "reboot": True}
    folder = box.state_dir / handover.DIRECTORY
    assert (folder / handover.BUNDLE).read_bytes() == made.read_bytes()
    request, _ = handover.take(box.state_dir)
    assert request.reboot is True and request.by == "admin" and request.version == "0.2.0"
    view = client.get("/console/api/update").json()
    assert view["running"] == "0.1.0" and view["progress"]["state"] == "queued"
    assert box.entry_names() == ["appliance-0001-a.conf"]  # the server writes no slot


@pytest.mark.parametrize("case, reason", [
    ("changed", "does not match its sha256"),
    ("other-key", "signature"),
    ("downgrade", "older than the running 0.1.0"),
    ("other-sku", "is for SKU"),
    ("garbage", "bundle"),
])
def test_a_refused_bundle_is_deleted_with_its_reason(console, box, case, reason):
    client, csrf, _ = console
    if case == "garbage":
        data = b"this is not a bundle"
    else:
        made = box.bundle(version="0.0.9" if case == "downgrade" else "0.2.0",
                          sku="nvidia-h100" if case == "other-sku" else "cpu-x86_64-avx2",
                          key=Ed25519PrivateKey.generate() if case == "other-key" else None)
        data = bytearray(made.read_bytes())
        if case == "changed":
            data[-20000] ^= 1
        data = bytes(data)
    r = _put(client, csrf, data)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "update_refused" and reason in error["message"], error
    assert "\n" not in error["message"] and handover.RECEIVING not in error["message"]
    assert list((box.state_dir / handover.DIRECTORY).iterdir()) == []


def test_an_empty_upload_is_refused(console, box):
    client, csrf, _ = console
    r = _put(client, csrf, b"")
    assert r.status_code == 400 and "upload was empty" in r.json()["error"]["message"]


def test_one_update_at_a_time_and_a_waiting_one_can_be_cancelled(console, box):
    client, csrf, _ = console
    assert _put(client, csrf, box.bundle(version="0.2.0").read_bytes()).status_code == 202
    second = _put(client, csrf, box.bundle(name="second.bundle", version="0.3.0").read_bytes())
    assert second.status_code == 409 and "0.2.0 is still queued" in second.json()["error"]["message"]
    r = client.post("/console/api/update/cancel", headers={"Origin": ORIGIN, "x-csrf-token": csrf})
    assert r.status_code == 200 and r.json()["progress"]["state"] == ApplyState.FAILED.value
    assert _put(client, csrf, box.bundle(name="third.bundle", version="0.3.0").read_bytes()).status_code == 202


def test_no_upload_without_the_session_and_its_token(console, box):
    client, csrf, _ = console
    data = box.bundle(version="0.2.0").read_bytes()
    assert _put(client, "wrong-token", data).status_code == 403
    client.cookies.clear()
    assert _put(client, csrf, data).status_code == 401
    assert client.get("/console/api/update").status_code == 401
    assert not (box.state_dir / handover.DIRECTORY).exists()
