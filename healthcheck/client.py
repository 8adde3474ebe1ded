"""The monitor's own HTTP client for the server, with an internal API key kept in the state directory."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import httpx

from appliance.auth.keys import KeyStore

MONITOR_KEY_NAME = "internal:health-monitor"


def monitor_key(state_dir: Path) -> str:
    """The monitor's API key: made once, its secret kept 0600 beside the key database."""
    path = state_dir / "monitor.key"
    if path.is_file():
        secret = path.read_text().strip()
        with KeyStore(state_dir / "keys.sqlite") as keys:
            if keys.authenticate(secret) is not None:
                return secret
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with KeyStore(state_dir / "keys.sqlite") as keys:
        for rec in keys.list():
            if rec.name == MONITOR_KEY_NAME and not rec.revoked:
                keys.revoke(rec.id)
        _, secret = keys.create(MONITOR_KEY_NAME)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    return secret


def _verify(base_url: str, state_dir: Path) -> ssl.SSLContext | bool:
    """Trust the box's own certificate for its loopback address; nothing else is contacted."""
    if not base_url.startswith("https://"):
        return True
    cert = state_dir / "tls" / "cert.pem"
    if cert.is_file():
        return ssl.create_default_context(cafile=str(cert))
    return False


def make_client(base_url: str, state_dir: Path, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                             verify=_verify(base_url, state_dir), timeout=httpx.Timeout(30.0, connect=2.0))
