"""Start-up as systemd and a LAN client see it: TLS, READY=1 after the self-test, WATCHDOG=1, refusals."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from conftest import CHAT_MODEL, needs_avx512, start_server, stop_server
from wait import wait_until

pytestmark = needs_avx512


def test_https_with_the_per_box_certificate(default_store, tmp_path):
    from openai import OpenAI

    s = start_server(default_store, tmp_path / "state", scheme="https")
    try:
        cert = s.state_dir / "tls" / "cert.pem"
        ctx = ssl.create_default_context(cafile=str(cert))
        client = OpenAI(base_url=f"{s.url}/v1", api_key=s.key, http_client=httpx.Client(verify=ctx), max_retries=0)
        r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=3, temperature=0)
        assert r.usage.completion_tokens <= 3
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{s.url}/healthz")  # not trusted without the box's certificate
    finally:
        stop_server(s)


def test_sd_notify_ready_after_self_test_and_watchdog(default_store, tmp_path):
    pytest.importorskip("systemd.daemon")
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    s = start_server(default_store, tmp_path / "state", wait_ready=False,
                     env={"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "1000000"})
    messages: list[str] = []

    def ready_and_three_watchdogs() -> bool:
        """Watchdogs also come while the engines load, so three of them alone do not mean READY=1 is due."""
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        return any("READY=1" in m for m in messages) and sum("WATCHDOG=1" in m for m in messages) >= 3

    try:
        wait_until(ready_and_three_watchdogs, timeout=120, what="READY=1 and three WATCHDOG=1 notifications",
                   interval=0, details=lambda: f"received: {messages}\nlog: {s.log.read_text()[-2000:]}")
        ready = [m for m in messages if "READY=1" in m]
        assert ready, messages
        r = httpx.get(f"{s.url}/readyz", headers=s.headers())
        assert r.status_code == 200 and r.json()["ready"] is True
        assert sum("WATCHDOG=1" in m for m in messages) >= 3
    finally:
        stop_server(s)
        sock.close()


def test_tampered_store_is_refused_with_the_reason(store_copy, tmp_path):
    data = store_copy / "smollm2-135m-instruct" / "model.onnx.data"
    raw = bytearray(data.read_bytes())
    raw[99] ^= 1
    data.write_bytes(bytes(raw))
    s = start_server(store_copy, tmp_path / "state")
    try:
        r = httpx.get(f"{s.url}/readyz", headers=s.headers())
        assert r.status_code == 503
        body = r.json()
        assert body["state"] == "failed" and "model.onnx.data changed on disk" in body["reason"]
        assert httpx.get(f"{s.url}/healthz").status_code == 200
        chat = httpx.post(f"{s.url}/v1/chat/completions", headers=s.headers(),
                          json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "x"}]})
        assert chat.status_code == 503 and "not ready" in chat.json()["error"]["message"]
    finally:
        stop_server(s)


def test_a_refused_store_ends_the_start_with_its_reason(tmp_path):
    """systemd must not kill and restart a server whose store can never load: READY=1 with the reason as STATUS,
    the reason on stderr (the box's screen), and /readyz still answering why."""
    pytest.importorskip("systemd.daemon")
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.2)
    s = start_server(tmp_path / "no-store", tmp_path / "state", env={"NOTIFY_SOCKET": sock_path})
    messages: list[str] = []

    def ready_sent() -> bool:
        try:
            messages.append(sock.recv(4096).decode())
        except socket.timeout:
            pass
        return any("READY=1" in m for m in messages)

    try:
        wait_until(ready_sent, timeout=60, what="READY=1", interval=0, details=lambda: f"received: {messages}")
        status = next(m for m in messages if "READY=1" in m)
        assert "STATUS=not serving:" in status and "no model store here" in status
        assert httpx.get(f"{s.url}/readyz", headers=s.headers()).json()["state"] == "failed"
        wait_until(lambda: "appliance: not serving:" in s.log.read_text(), timeout=30, what="the reason on stderr")
    finally:
        stop_server(s)
        sock.close()
