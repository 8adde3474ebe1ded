"""``appliance serve`` (the API daemon) and ``appliance up`` (the whole box without systemd)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from appliance.settings import Settings, load_settings

log = logging.getLogger("appliance")


def _settings(store, state_dir, host, port, tls, tls_cert, tls_key, trusted_key, max_queue, threads) -> Settings:
    return load_settings(store=store, state_dir=state_dir, host=host, port=port, tls=tls, tls_cert=tls_cert,
                         tls_key=tls_key, trusted_key=trusted_key, max_queue=max_queue, threads=threads)


def _configure_logging(level: str) -> None:
    from appliance.server.notify import journald_handler

    handler = journald_handler()
    root = logging.getLogger()
    root.handlers.clear()
    if handler is None:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())


def run_server(settings: Settings) -> None:
    import uvicorn

    from appliance.server.app import create_app

    _configure_logging(settings.log_level)
    ssl = {}
    scheme = "http"
    if settings.tls != "off":
        from appliance.server.tls import ensure_certificate

        files = ensure_certificate(settings)
        ssl = {"ssl_certfile": str(files.cert), "ssl_keyfile": str(files.key)}
        scheme = "https"
        log.info("TLS certificate %s, SHA-256 fingerprint %s", files.cert, files.fingerprint_sha256)
    log.info("serving %s on %s://%s:%d", settings.store, scheme, settings.host, settings.port)
    settings.ensure_state_dir()
    pid_file = settings.state_dir / "server.pid"
    pid_file.write_text(f"{os.getpid()}\n")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, timeout_graceful_shutdown=10, **ssl)


StoreOpt = typer.Option(None, "--store", help="model store (default /opt/appliance/store or APPLIANCE_STORE)")
StateOpt = typer.Option(None, "--state-dir", help="state directory (default /var/lib/appliance or APPLIANCE_STATE_DIR)")
HostOpt = typer.Option(None, "--host", help="address to bind (default 0.0.0.0)")
PortOpt = typer.Option(None, "--port", help="port (default 8443)")
TlsOpt = typer.Option(None, "--tls", help="'auto' (per-box self-signed or the installed certificate) or 'off'")
CertOpt = typer.Option(None, "--tls-cert", help="installed certificate (PEM)")
KeyOpt = typer.Option(None, "--tls-key", help="installed certificate's private key (PEM)")
TrustOpt = typer.Option(None, "--trusted-key", help="vendor public key the box trusts")
QueueOpt = typer.Option(None, "--max-queue", help="requests that may wait per model before 429")
ThreadsOpt = typer.Option(None, "--threads", help="engine threads (default: one per physical core)")


def serve(
    store: Path | None = StoreOpt, state_dir: Path | None = StateOpt, host: str | None = HostOpt,
    port: int | None = PortOpt, tls: str | None = TlsOpt, tls_cert: Path | None = CertOpt,
    tls_key: Path | None = KeyOpt, trusted_key: Path | None = TrustOpt, max_queue: int | None = QueueOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """The API daemon: verify the store, load engines, self-test, then serve the OpenAI API."""
    run_server(_settings(store, state_dir, host, port, tls, tls_cert, tls_key, trusted_key, max_queue, threads))


def up(
    store: Path | None = StoreOpt, state_dir: Path | None = StateOpt, host: str | None = HostOpt,
    port: int | None = PortOpt, tls: str | None = TlsOpt, tls_cert: Path | None = CertOpt,
    tls_key: Path | None = KeyOpt, trusted_key: Path | None = TrustOpt, max_queue: int | None = QueueOpt,
    threads: int | None = ThreadsOpt,
) -> None:
    """The whole box on this machine without systemd: the server plus the health monitor, supervised."""
    from appliance.box.supervisor import run_box

    run_box(_settings(store, state_dir, host, port, tls, tls_cert, tls_key, trusted_key, max_queue, threads))
