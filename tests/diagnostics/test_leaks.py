"""The heart of the diagnostics work: secrets and private text planted everywhere the box keeps data never reach
the vendor, in any encoding the box uses, while the same value keeps the same placeholder across the bundle."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from appliance.auth.admins import AdminStore
from appliance.auth.keys import KeyStore
from appliance.auth.sessions import SessionStore
from appliance.auth.support import SupportStore
from appliance.box.firstboot import run_firstboot
from appliance.diagnostics import known_secrets
from appliance.diagnostics.collect import collect, map_path
from appliance.diagnostics.review import release
from appliance.diagnostics.vendor import open_bundle
from appliance.health.history import History
from appliance.health.status import Result
from appliance.settings import write_admin_settings

PASSWORD = "Quiet-Harbour-Lantern-4242"
ADMIN = "margarethe.k"
PROMPT = "PURPLE-OCELOT-7731 summarise the Meyer merger"
COMPLETION = "The Meyer merger closes on 3 March"
IP4, IP4_OTHER = "192.168.17.42", "10.20.30.40"
IP6 = "fe80::1c2d:3e4f:5a6b:7c8d"
MAC = "3c:22:fb:01:02:ab"
EMAIL = "margarethe@example-firm.de"
LAN_HOST = "nas-keller.fritz.box"
BOX_HOST = "shelf7-ai-box"


def _encodings(value: str) -> set[str]:
    raw = value.encode()
    return {value, quote(value, safe=""), quote_plus(value), base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")}


@pytest.fixture()
def planted(box_settings, monkeypatch):
    """A box in use: firstboot secrets, an admin, a session, API keys, logs and history full of private things."""
    monkeypatch.setattr(known_secrets.socket, "gethostname", lambda: BOX_HOST)
    box_settings = box_settings.model_copy(update={"tls": "auto"})
    report = run_firstboot(box_settings)
    setup_code = report.setup_code
    with AdminStore(box_settings.console_db) as admins:
        admins.create_first_admin(setup_code, ADMIN, PASSWORD)
        password_hash = admins.db.execute("SELECT password_hash FROM admins").fetchone()[0]
    sessions = SessionStore(box_settings.console_db, box_settings.session_secret_file.read_bytes())
    session_token = sessions.create(ADMIN)
    session_id = sessions.db.execute("SELECT id FROM sessions").fetchone()[0]
    sessions.close()
    with KeyStore(box_settings.keys_db) as keys:
        _, api_key = keys.create("laptop")
        _, other_key = keys.create("ci")
    with SupportStore(box_settings.support_db) as support:
        _, support_token = support.open(4, by="console:" + ADMIN)
    secrets = {
        "support token": support_token, "api key": api_key, "second api key": other_key,
        "monitor key": box_settings.monitor_key_file.read_text().strip(),
        "admin password": PASSWORD, "password hash": password_hash, "setup code": setup_code,
        "session token": session_token, "session id": session_id,
        "session secret": box_settings.session_secret_file.read_text().strip(),
        "tls key": (box_settings.tls_dir / "key.pem").read_text().splitlines()[1],
        "admin name": ADMIN, "ip": IP4, "other ip": IP4_OTHER, "ipv6": IP6, "mac": MAC, "email": EMAIL,
        "lan host": LAN_HOST, "box host": BOX_HOST, "prompt": PROMPT, "completion": COMPLETION,
    }
    tls_pem = (box_settings.tls_dir / "key.pem").read_text()
    history = History(box_settings.health_db)
    history.record("server.liveness", Result.failed(f"no answer from {IP4}:8443 ({LAN_HOST})"))
    history.record("box", Result.failed(f"server down; last client {IP4_OTHER}"))
    history.restart("server", f"restarted by the admin {ADMIN} from {IP4}")
    history.close()
    log_lines = [
        f"INFO 127.0.0.1 -> {IP4}:8443 GET /v1/models 200 host={LAN_HOST} mac={MAC} from {BOX_HOST}",
        f"DEBUG Authorization: Bearer {api_key}",
        f"DEBUG replayed key in base64 {base64.b64encode(api_key.encode()).decode()}",
        f"DEBUG query ?key={quote(other_key, safe='')}&session={quote(session_token, safe='')}",
        f"DEBUG Cookie: appliance_session={session_token}",
        f"WARNING login failed for {ADMIN} <{EMAIL}> password={PASSWORD} from {IP6}",
        f"INFO console setup code: {setup_code}",
        f"DEBUG stored hash {password_hash}",
        f"DEBUG session row {session_id} secret file {box_settings.session_secret_file.read_text().strip()}",
        f"DEBUG monitor credential {box_settings.monitor_key_file.read_text().strip()}",
        "DEBUG request body " + json.dumps({"model": "m", "messages": [{"role": "user", "content": PROMPT}]}),
        "DEBUG response body " + json.dumps({"choices": [{"text": COMPLETION}], "prompt": PROMPT}),
        f"DEBUG url-encoded prompt {quote_plus(PROMPT)}",
        f"DEBUG key material\n{tls_pem}",
        f"INFO peer {IP4} again",
        f"DEBUG vendor called with Authorization: Bearer {support_token}",
        f"DEBUG support token in a link ?t={quote(support_token, safe='')}",
    ]
    (box_settings.state_dir / "server.log").write_text("\n".join(log_lines) + "\n")
    (box_settings.state_dir / "health.log").write_text(f"probe {IP4} ok; alert to {EMAIL}\n")
    write_admin_settings(box_settings.state_dir, {"box_name": f"Shelf of {ADMIN}",
                                              "cors_origins": [f"http://{IP4_OTHER}:3000"]})
    return box_settings, secrets


def test_no_secret_or_private_text_reaches_the_vendor_in_any_encoding(planted, vendor_pair, tmp_path):
    box_settings, secrets = planted
    index, _ = collect(box_settings)
    sealed = release(box_settings, index.id, vendor_pair[1])
    _, root = open_bundle(sealed, vendor_pair[0], tmp_path / "opened")
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == len(index.files) + 2  # index.json and the summary
    blob = b"\n".join(p.read_bytes() for p in files)
    leaks = [(what, form) for what, value in secrets.items() for form in _encodings(value) if form.encode() in blob]
    assert not leaks, leaks
    assert b"PRIVATE KEY" not in blob and b"sk-appl-" not in blob


def test_placeholders_are_consistent_and_the_map_stays_on_the_box(planted, vendor_pair, tmp_path):
    box_settings, _ = planted
    index, staged = collect(box_settings)
    mapping = json.loads(map_path(box_settings, index.id).read_text())
    assert oct(map_path(box_settings, index.id).stat().st_mode & 0o777) == "0o600"
    by_original = {v["original"]: k for k, v in mapping.items()}
    ip = by_original[IP4]
    assert ip.startswith("[ip-")
    log = (staged / "files/services/server.log").read_text()
    history = (staged / "files/health_record/history.json").read_text()
    assert log.count(ip) >= 2 and ip in history
    assert by_original[ADMIN] in history and by_original[ADMIN] in log
    sealed = release(box_settings, index.id, vendor_pair[1])
    _, root = open_bundle(sealed, vendor_pair[0], tmp_path / "opened")
    assert not any("redaction" in p.name for p in root.rglob("*"))
    assert index.redaction.distinct["ip"] >= 3
