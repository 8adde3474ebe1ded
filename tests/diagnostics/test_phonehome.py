"""Phone-home against a real HTTP server on loopback: the summary arrives as JSON with the box's state and none of
the box's secrets; 5xx and dead connections are retried with back-off up to a bound, 4xx never; one summary waits
at most; nothing is sent while it is off, which is the default."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, quote_plus

import pytest

from appliance.auth.keys import KeyStore
from appliance.diagnostics import known_secrets
from appliance.diagnostics.phonehome import PhoneHome, read_attempt
from appliance.health.history import History
from appliance.health.status import Result
from appliance.settings import BoxSettings
from conftest import free_port

PASSWORD = "Quiet-Harbour-Lantern-4242"
PROMPT = "PURPLE-OCELOT-7731 summarise the Meyer merger"
IP4 = "192.168.17.42"
BOX_HOST = "shelf7-ai-box"
LAN_HOST = "nas-keller.fritz.box"


class Vendor:
    """A vendor endpoint on 127.0.0.1 that answers with the scripted statuses (the last one repeats)."""

    def __init__(self, statuses: list[int]):
        self.statuses, self.bodies, self.content_types = list(statuses), [], []
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                vendor.bodies.append(body)
                vendor.content_types.append(self.headers.get("Content-Type"))
                status = vendor.statuses.pop(0) if len(vendor.statuses) > 1 else vendor.statuses[0]
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/phone-home"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def vendor():
    made: list[Vendor] = []

    def make(*statuses: int) -> Vendor:
        made.append(Vendor(list(statuses)))
        return made[-1]

    yield make
    for v in made:
        v.close()


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 1_750_000_000.0, []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _on(box_settings, url: str) -> BoxSettings:
    return box_settings.model_copy(update={"phone_home": True, "phone_home_url": url})


def _tick(sender: PhoneHome):
    return asyncio.run(sender.tick())


def _encodings(value: str) -> set[str]:
    raw = value.encode()
    return {value, quote(value, safe=""), quote_plus(value), base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(), base64.b64encode(raw).decode().rstrip("=")}


def test_the_summary_arrives_as_json_with_the_box_state_and_no_secret(box_settings, vendor, monkeypatch):
    monkeypatch.setattr(known_secrets.socket, "gethostname", lambda: BOX_HOST)
    with KeyStore(box_settings.keys_db) as keys:
        _, api_key = keys.create("laptop")
    history = History(box_settings.health_db)
    history.record("server.liveness", Result.failed(f"no answer from {IP4}:8443 ({LAN_HOST}) on {BOX_HOST}"))
    history.record("server.golden", Result.degraded(
        "unexpected request body " + json.dumps({"messages": [{"role": "user", "content": PROMPT}]})))
    history.record("disk", Result.ok("plenty of room"))
    history.record("box", Result.failed(f"server down; Authorization: Bearer {api_key}; password={PASSWORD}"))
    history.restart("server", f"restarted from {IP4} after a request for {quote_plus(PROMPT)}")
    history.close()
    v = vendor(200)
    clock = Clock()
    attempt = _tick(PhoneHome(_on(box_settings, v.url), clock=clock, sleep=clock.sleep))
    assert attempt.outcome == "delivered" and attempt.status == 200 and attempt.attempts == 1
    assert len(v.bodies) == 1 and v.content_types == ["application/json"]
    summary = json.loads(v.bodies[0])
    assert summary["kind"] == "appliance.phone-home/1" and summary["state"]["status"] == "failed"
    assert sorted(c["name"] for c in summary["failing_checks"]) == ["server.golden", "server.liveness"]
    assert summary["restarts"]["count"] == 1 and summary["versions"]["appliance"]
    assert summary["sku"] and summary["versions"]["models"]
    secrets = {"api key": api_key, "admin password": PASSWORD, "ip": IP4, "box host": BOX_HOST, "lan host": LAN_HOST,
               "prompt": PROMPT}
    leaks = [(what, form) for what, value in secrets.items() for form in _encodings(value) if form.encode() in v.bodies[0]]
    assert not leaks, leaks
    assert b"sk-appl-" not in v.bodies[0] and "[ip-" in summary["failing_checks"][1]["reason"]
    assert read_attempt(box_settings) == attempt


def test_5xx_is_retried_with_growing_back_off_then_delivered(box_settings, vendor):
    v = vendor(503, 502, 200)
    clock = Clock()
    sender = PhoneHome(_on(box_settings, v.url), clock=clock, sleep=clock.sleep, first_delay=30)
    attempt = _tick(sender)
    assert (attempt.outcome, attempt.status, attempt.attempts) == ("delivered", 200, 3)
    assert clock.slept == [30, 60] and len(v.bodies) == 3 and len(set(v.bodies)) == 1
    assert sender.pending is None


def test_gives_up_after_the_bound_and_keeps_one_summary_pending(box_settings, vendor):
    v = vendor(500)
    clock = Clock()
    sender = PhoneHome(_on(box_settings, v.url), clock=clock, sleep=clock.sleep, attempts=3, first_delay=10,
                       max_delay=15)
    first = _tick(sender)
    assert (first.outcome, first.status, first.attempts, first.pending) == ("failed", 500, 3, True)
    assert len(v.bodies) == 3 and clock.slept == [10, 15]
    waiting = sender.pending
    clock.now += 3600
    second = _tick(sender)
    assert second.outcome == "failed" and len(v.bodies) == 6
    assert sender.pending is not waiting and sender.pending.at > waiting.at  # replaced, not queued behind it
    assert read_attempt(box_settings).pending is True


def test_a_dead_vendor_is_retried_then_recorded_as_failed(box_settings):
    clock = Clock()
    sender = PhoneHome(_on(box_settings, f"http://127.0.0.1:{free_port()}/phone-home"), clock=clock,
                       sleep=clock.sleep, attempts=2)
    attempt = _tick(sender)
    assert attempt.outcome == "failed" and attempt.status is None and "ConnectError" in attempt.detail
    assert len(clock.slept) == 1 and sender.pending is not None


@pytest.mark.parametrize("status", [400, 401, 404, 429])
def test_4xx_is_not_retried(box_settings, vendor, status):
    v = vendor(status, 200)
    clock = Clock()
    sender = PhoneHome(_on(box_settings, v.url), clock=clock, sleep=clock.sleep)
    attempt = _tick(sender)
    assert (attempt.outcome, attempt.status, attempt.attempts) == ("refused", status, 1)
    assert len(v.bodies) == 1 and clock.slept == [] and sender.pending is None


def test_nothing_is_sent_while_off_which_is_the_default(box_settings, vendor):
    assert BoxSettings(state_dir=box_settings.state_dir).phone_home is False
    v = vendor(200)
    off = box_settings.model_copy(update={"phone_home_url": v.url})
    clock = Clock()
    for _ in range(3):
        assert _tick(PhoneHome(off, clock=clock, sleep=clock.sleep)) is None
    assert v.bodies == [] and read_attempt(off) is None and not off.phone_home_file.exists()


def test_the_box_id_stays_the_same_across_summaries(box_settings, vendor):
    v = vendor(200)
    sender = PhoneHome(_on(box_settings, v.url))
    _tick(sender)
    _tick(sender)
    ids = {json.loads(b)["box_id"] for b in v.bodies}
    assert len(ids) == 1 and box_settings.box_id_file.read_text().strip() in ids
