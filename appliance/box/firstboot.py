"""Per-box secrets, made once: by ``appliance-firstboot.service`` on the box, or by the first ``appliance up``.

Today that is the TLS key and certificate and the monitor's API credential;
the console adds its session secret and one-time setup code here. Each
piece is made only when missing (or invalid), so running it again is safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from appliance.auth.keys import KeyStore
from appliance.server.tls import CERT_NAME, ensure_certificate
from appliance.settings import Settings

MONITOR_KEY_NAME = "internal:health-monitor"


@dataclass
class FirstbootReport:
    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    tls_fingerprint: str | None = None


def _write_secret(path, secret: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret)
    os.replace(tmp, path)


def provision_monitor_key(settings: Settings) -> bool:
    """The monitor's API key in the key store, its secret 0600 in the state directory; True if made now."""
    path = settings.monitor_key_file
    with KeyStore(settings.keys_db) as keys:
        if path.is_file() and keys.authenticate(path.read_text().strip()) is not None:
            return False
        for rec in keys.list():
            if rec.name == MONITOR_KEY_NAME and not rec.revoked:
                keys.revoke(rec.id)
        _, secret = keys.create(MONITOR_KEY_NAME)
    _write_secret(path, secret)
    return True


def run_firstboot(settings: Settings) -> FirstbootReport:
    report = FirstbootReport()
    settings.ensure_state_dir()
    if settings.tls != "off":
        had_cert = (settings.tls_dir / CERT_NAME).is_file() or settings.tls_cert is not None
        report.tls_fingerprint = ensure_certificate(settings).fingerprint_sha256
        (report.kept if had_cert else report.made).append("TLS certificate")
    (report.made if provision_monitor_key(settings) else report.kept).append("monitor credential")
    settings.firstboot_marker.touch()
    return report
