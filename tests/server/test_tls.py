"""TLS: the box's self-signed certificate and the admin's installed one."""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from appliance.errors import ApplianceError
from appliance.server.tls import ensure_certificate
from appliance.settings import Settings


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **kw)


def test_self_signed_created_once_and_reused(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    first = ensure_certificate(s)
    pem = first.cert.read_bytes()
    second = ensure_certificate(s)
    assert second == first
    assert first.cert.read_bytes() == pem
    assert first.cert.parent == s.tls_dir
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert first.fingerprint_sha256 == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def test_self_signed_files_and_contents(tmp_path: Path) -> None:
    files = ensure_certificate(_settings(tmp_path))
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.cert.parent.stat().st_mode) == 0o700
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(files.cert, files.key)
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 3640 <= days <= 3660
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", socket.gethostname()} <= set(san.get_values_for_type(x509.DNSName))
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips and ipaddress.ip_address("::1") in ips


def test_first_boot_without_network_still_makes_a_certificate(tmp_path: Path, monkeypatch) -> None:
    """The first-boot unit has no netlink socket (RestrictAddressFamilies=AF_UNIX): the certificate names loopback."""
    import psutil

    def no_netlink():
        raise OSError(97, "Address family not supported by protocol")

    monkeypatch.setattr(psutil, "net_if_addrs", no_netlink)
    files = ensure_certificate(_settings(tmp_path))
    san = x509.load_pem_x509_certificate(files.cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in san.get_values_for_type(x509.IPAddress)


def test_strict_client_verifies_self_signed(tmp_path: Path) -> None:
    files = ensure_certificate(_settings(tmp_path))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.cert, files.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(files.cert))
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    for name in ("localhost", "127.0.0.1"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=name) as tls:
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                assert hashlib.sha256(der).digest().hex(":").upper() == files.fingerprint_sha256
                tls.sendall(b"x")
    thread.join(5)
    listener.close()


def _pair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    files = ensure_certificate(_settings(tmp_path / name))
    cert, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    shutil.copy(files.cert, cert)
    shutil.copy(files.key, key)
    return cert, key


def test_installed_certificate_is_used(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "admin")
    files = ensure_certificate(_settings(tmp_path, tls_cert=cert, tls_key=key))
    assert (files.cert, files.key) == (cert, key)
    assert not (tmp_path / "state" / "tls").exists()


def test_installed_mismatch_is_clear(tmp_path: Path) -> None:
    cert, _ = _pair(tmp_path, "one")
    _, other_key = _pair(tmp_path, "two")
    with pytest.raises(ApplianceError) as err:
        ensure_certificate(_settings(tmp_path, tls_cert=cert, tls_key=other_key))
    message = str(err.value)
    assert str(other_key) in message and str(cert) in message and "does not belong" in message


def test_installed_bad_files_are_named(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "admin")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ApplianceError, match=str(junk)):
        ensure_certificate(_settings(tmp_path, tls_cert=junk, tls_key=key))
    with pytest.raises(ApplianceError, match="is not a PEM private key"):
        ensure_certificate(_settings(tmp_path, tls_cert=cert, tls_key=junk))
    missing = tmp_path / "missing.pem"
    with pytest.raises(ApplianceError, match=str(missing)):
        ensure_certificate(_settings(tmp_path, tls_cert=missing, tls_key=key))
    with pytest.raises(ApplianceError, match="tls_key"):
        ensure_certificate(_settings(tmp_path, tls_cert=cert))


def test_installed_encrypted_key_is_refused(tmp_path: Path) -> None:
    cert, key = _pair(tmp_path, "admin")
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(ApplianceError, match="encrypted"):
        ensure_certificate(_settings(tmp_path, tls_cert=cert, tls_key=encrypted))
