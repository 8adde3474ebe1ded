"""TLS for the API: the admin's certificate, or one self-signed certificate per box.

A box on a LAN has no public name, so by default it makes its own ECDSA P-256
certificate once and keeps it: clients pin its SHA-256 fingerprint (shown by
the console and at start) or add ``cert.pem`` to their trust store. An admin
who has a certificate from their own CA installs it with ``tls_cert`` and
``tls_key``; it is checked here so a wrong file fails at start with the fix,
not at the first client's handshake.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from appliance.errors import ApplianceError
from appliance.settings import Settings

VALIDITY = dt.timedelta(days=3650)
CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """What uvicorn needs, plus the fingerprint clients can pin."""

    cert: Path
    key: Path
    fingerprint_sha256: str


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate as ``AB:CD:...``, the form browsers and openssl show."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def ensure_certificate(settings: Settings) -> TlsFiles:
    """The installed certificate if the admin set one, else this box's self-signed one (made on first use)."""
    if settings.tls_cert is not None or settings.tls_key is not None:
        return _installed(settings.tls_cert, settings.tls_key)
    return _self_signed(settings.tls_dir)


def _installed(cert_path: Path | None, key_path: Path | None) -> TlsFiles:
    if cert_path is None or key_path is None:
        given, missing = ("tls_cert", "tls_key") if key_path is None else ("tls_key", "tls_cert")
        raise ApplianceError(
            f"{given} is set but {missing} is not; set both (APPLIANCE_TLS_CERT and APPLIANCE_TLS_KEY) "
            "or neither to use the box's self-signed certificate"
        )
    fix = "install the certificate and its matching unencrypted private key as PEM files"
    return _load_pair(cert_path, key_path, fix)


def _load_pair(cert_path: Path, key_path: Path, fix: str) -> TlsFiles:
    cert = _load_cert(cert_path, fix)
    key = _load_key(key_path, fix)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        raise ApplianceError(f"TLS key {key_path} does not belong to certificate {cert_path}; {fix}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise ApplianceError(f"TLS certificate {cert_path} with key {key_path} is refused by ssl: {exc}; {fix}") from exc
    return TlsFiles(cert=cert_path, key=key_path, fingerprint_sha256=fingerprint(cert))


def _read(path: Path, what: str, fix: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ApplianceError(f"cannot read TLS {what} {path}: {exc.strerror or exc}; {fix}") from exc


def _load_cert(path: Path, fix: str) -> x509.Certificate:
    data = _read(path, "certificate", fix)
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except (ValueError, IndexError) as exc:
        raise ApplianceError(f"TLS certificate {path} is not a PEM certificate: {exc}; {fix}") from exc


def _load_key(path: Path, fix: str) -> PrivateKeyTypes:
    data = _read(path, "key", fix)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise ApplianceError(
            f"TLS key {path} is encrypted; the server starts unattended, so decrypt it "
            f"(openssl pkey -in {path} -out KEY.pem) and keep it mode 0600"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ApplianceError(f"TLS key {path} is not a PEM private key: {exc}; {fix}") from exc


def _self_signed(tls_dir: Path) -> TlsFiles:
    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    fix = f"remove {cert_path} and {key_path} to make a new self-signed certificate (clients must re-pin it)"
    with open(tls_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cert_path.exists() and key_path.exists()):
            _write_self_signed(cert_path, key_path)
        elif key_path.stat().st_mode & 0o077:
            key_path.chmod(0o600)
        return _load_pair(cert_path, key_path, fix)


def _write_self_signed(cert_path: Path, key_path: Path) -> None:
    hostname = socket.gethostname() or "appliance"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    dns = list(dict.fromkeys([hostname, "localhost"]))
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"), *_lan_addresses()]
    now = dt.datetime.now(dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [*(x509.DNSName(d) for d in dns), *(x509.IPAddress(ip) for ip in dict.fromkeys(ips))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _atomic_write(key_path, key_pem, 0o600)
    _atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _atomic_write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _lan_addresses() -> list[IPAddress]:
    """Non-loopback IPv4 addresses of this host, so LAN clients can verify by IP too.

    None where interfaces cannot be listed: the first-boot unit runs without network (no netlink socket)."""
    import psutil

    try:
        found = [a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family == socket.AF_INET]
    except OSError:
        found = []
    result: list[IPAddress] = []
    for text in found:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            continue
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified) and ip not in result:
            result.append(ip)
    return result
