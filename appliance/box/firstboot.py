"""Per-box secrets, made once: by ``appliance-firstboot.service`` on the box, or by ``appliance up``.

The TLS key and certificate, the console's session secret, the monitor's
API credential, and, until an admin claims the box, the one-time setup code
(shown here, on the box's console and in the journal, never stored in
clear). Each piece is made only when missing (or invalid), so running it
again is safe.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import secrets

from appliance.auth.admins import AdminStore
from appliance.auth.keys import CONSOLE_KEY_NAME, MONITOR_KEY_NAME, KeyStore
from appliance.server.tls import CERT_NAME, ensure_certificate
from appliance.settings import Settings



@dataclass
class FirstbootReport:
    made: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    tls_fingerprint: str | None = None
    setup_code: str | None = None  # shown once; None when an admin exists or a code is already waiting


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


def provision_console_key(settings: Settings) -> bool:
    """The key the console playground's requests are accounted to; its secret is never needed."""
    with KeyStore(settings.keys_db) as keys:
        if any(k.name == CONSOLE_KEY_NAME and not k.revoked for k in keys.list()):
            return False
        keys.create(CONSOLE_KEY_NAME)
    return True


def provision_session_secret(settings: Settings) -> bool:
    path = settings.session_secret_file
    if path.is_file() and len(path.read_bytes()) >= 32:
        return False
    _write_secret(path, secrets.token_hex(32))
    return True


def run_firstboot(settings: Settings, new_setup_code: bool = False) -> FirstbootReport:
    report = FirstbootReport()
    settings.ensure_state_dir()
    if settings.tls != "off":
        had_cert = (settings.tls_dir / CERT_NAME).is_file() or settings.tls_cert is not None
        report.tls_fingerprint = ensure_certificate(settings).fingerprint_sha256
        (report.kept if had_cert else report.made).append("TLS certificate")
    (report.made if provision_session_secret(settings) else report.kept).append("session secret")
    (report.made if provision_monitor_key(settings) else report.kept).append("monitor credential")
    provision_console_key(settings)
    with AdminStore(settings.console_db) as admins:
        if not admins.has_admin() and (new_setup_code or not admins.has_setup_code()):
            report.setup_code = admins.new_setup_code()
            report.made.append("setup code")
    settings.firstboot_marker.touch()
    return report
