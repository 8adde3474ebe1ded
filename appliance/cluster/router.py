"""vllm-router in front of a list of boxes: its command line, a check of each box before it starts, and the start.

The router probes each box's ``/health`` (status code only, no credentials),
takes a box out after ``health_failures`` bad probes and back after
``health_successes`` good ones, retries a failed request on another box, and
forwards the client's ``Authorization`` header, so every box checks the key
itself. It trusts the boxes' certificates through OpenSSL's ``SSL_CERT_FILE``
(the CA given with ``--ca``); certificate checks are never turned off.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from appliance.cluster.settings import ClusterSettings
from appliance.errors import ApplianceError
from appliance.settings import is_loopback

ROUTER = "vllm-router"
INSTALL = "pip install 'appliance[cluster]' (it pins vllm-router)"


def box_url(text: str) -> str:
    """``https://host:port`` of a box, as the router wants it (no path, no trailing slash)."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ApplianceError(f"{text!r} is not a box address; write https://HOST:PORT, e.g. https://192.168.1.21:8443")
    return f"{parts.scheme}://{parts.netloc}"


def find_router() -> Path:
    """The router's executable: beside this Python (its venv) first, then on PATH."""
    beside = Path(sys.executable).parent / ROUTER
    found = beside if beside.is_file() else shutil.which(ROUTER)
    if not found:
        raise ApplianceError(f"{ROUTER} is not installed in {Path(sys.executable).parent} nor on PATH; {INSTALL}")
    return Path(found)


def router_command(settings: ClusterSettings, boxes: list[str], router: Path) -> list[str]:
    if not boxes:
        raise ApplianceError("no boxes given; name each box's address, e.g. "
                             "`appliance cluster https://192.168.1.21:8443 https://192.168.1.22:8443 --ca ca.pem`")
    if not is_loopback(settings.host) and not settings.allow_plain_http:
        raise ApplianceError(f"the router would listen on {settings.host} in plain HTTP, so API keys and prompts "
                             "would cross the LAN unencrypted; keep --host 127.0.0.1 (run it beside the clients), put "
                             "a TLS proxy in front, or pass --allow-plain-http on a network you trust")
    return [
        str(router), "--host", settings.host, "--port", str(settings.port),
        "--worker-urls", *boxes, "--policy", settings.policy,
        "--health-check-endpoint", "/health",
        "--health-check-interval-secs", str(settings.health_interval),
        "--health-failure-threshold", str(settings.health_failures),
        "--health-success-threshold", str(settings.health_successes),
        "--worker-startup-timeout-secs", str(settings.startup_timeout),
        "--worker-startup-check-interval", "1",
        "--retry-max-retries", str(settings.retries),
        "--retry-initial-backoff-ms", "200", "--retry-backoff-multiplier", "2", "--retry-max-backoff-ms", "3000",
        "--cb-failure-threshold", str(settings.breaker_failures), "--cb-success-threshold", "1",
        "--cb-timeout-duration-secs", str(settings.breaker_seconds),
        "--prometheus-port", str(settings.metrics_port), "--prometheus-host", "127.0.0.1",
        "--log-level", settings.log_level,
    ]


def router_environment(settings: ClusterSettings) -> dict[str, str]:
    """The router's environment: OpenSSL trusts exactly the given CA for the boxes' HTTPS."""
    env = dict(os.environ)
    if settings.ca is not None:
        env["SSL_CERT_FILE"] = str(settings.ca)
    return env


@dataclass(frozen=True, slots=True)
class BoxCheck:
    url: str
    ready: bool
    problem: str = ""


def _trust(settings: ClusterSettings, url: str) -> ssl.SSLContext | bool:
    if not url.startswith("https://"):
        return True
    if settings.ca is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(settings.ca))
    except (OSError, ssl.SSLError) as exc:
        raise ApplianceError(f"cannot read the CA file {settings.ca}: {exc}; pass --ca with a PEM certificate") from None


def check_box(settings: ClusterSettings, url: str) -> BoxCheck:
    """Probe a box the way the router will, so a certificate it cannot trust is named before it starts."""
    try:
        r = httpx.get(f"{url}/health", verify=_trust(settings, url), timeout=5)
    except httpx.ConnectError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            raise ApplianceError(
                f"the certificate of {url} is not trusted ({exc}); upload a certificate signed by your CA on the "
                "box's settings page and pass --ca CA.pem, or pass --ca with the box's own cert.pem "
                "(STATE/tls/cert.pem, downloadable from its console)") from None
        return BoxCheck(url, False, f"does not answer ({exc}); the router adds it once it is ready")
    except httpx.HTTPError as exc:
        return BoxCheck(url, False, f"does not answer ({exc}); the router adds it once it is ready")
    if r.status_code == 200:
        return BoxCheck(url, True)
    if r.status_code == 401:
        raise ApplianceError(f"{url}/health asks for credentials, so the router could never see it ready; update "
                             "the box to a version whose /health answers without a key")
    return BoxCheck(url, False, f"not ready (HTTP {r.status_code}); the router adds it once it is ready")


def run_router(command: list[str], env: dict[str, str]) -> None:
    """Become the router (exec), so signals from systemd or a terminal reach it directly."""
    os.execve(command[0], command, env)
