"""The monitor's HTTP client for the server, with the credential ``appliance firstboot`` provisioned."""

from __future__ import annotations

import ssl

import httpx

from appliance.errors import ApplianceError
from appliance.settings import BoxSettings


def monitor_key(settings: BoxSettings) -> str:
    path = settings.monitor_key_file
    try:
        secret = path.read_text().strip()
    except OSError:
        secret = ""
    if not secret:
        raise ApplianceError(f"the monitor has no credential at {path}; run `appliance firstboot --state-dir "
                             f"{settings.state_dir}` (appliance-firstboot.service does it on the box)")
    return secret


def _verify(base_url: str, settings: BoxSettings) -> ssl.SSLContext | bool:
    """Trust the box's own certificate for its loopback address; nothing else is contacted."""
    if not base_url.startswith("https://"):
        return True
    cert = settings.tls_dir / "cert.pem"
    if cert.is_file():
        return ssl.create_default_context(cafile=str(cert))
    return False


def make_client(base_url: str, settings: BoxSettings, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key}"},
                             verify=_verify(base_url, settings), timeout=httpx.Timeout(30.0, connect=2.0))
