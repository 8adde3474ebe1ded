"""``appliance serve`` (the API daemon) and ``appliance up`` (the whole box without systemd)."""

from __future__ import annotations

import logging
import os
import sys

from appliance.cli.options import SERVE_OPTIONS, settings_command
from appliance.settings import Settings

log = logging.getLogger("appliance")


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

    from appliance.server.app import RESTART_EXIT_CODE, create_app

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
    settings.server_pid_file.write_text(f"{os.getpid()}\n")
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                                           access_log=False, timeout_graceful_shutdown=10, **ssl))
    app.state.uvicorn = server
    server.run()
    if app.state.restart_requested:
        log.info("restarting to apply the admin's settings")
        sys.exit(RESTART_EXIT_CODE)


@settings_command(Settings, *SERVE_OPTIONS)
def serve(settings: Settings) -> None:
    """The API daemon: verify the store, load engines, self-test, then serve the OpenAI API."""
    run_server(settings)


@settings_command(Settings, *SERVE_OPTIONS)
def up(settings: Settings) -> None:
    """The whole box on this machine without systemd: first-boot setup once, then the server and the monitor."""
    from appliance.box.supervisor import run_box

    run_box(settings)
