"""``appliance up``: first-boot setup once, then the server and the health monitor as child processes.

This stands in for systemd on a developer machine: the monitor asks for a
server restart by signalling the server (whose pid it reads from the state
directory); the supervisor sees the exit, puts it in the health history
with its cause, and starts the server again, backing off, giving up after
``MAX_RESTARTS`` in ``RESTART_WINDOW_S`` as systemd's start limit would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from appliance.auth.keys import INTERNAL_KEY_PREFIX, KeyStore
from appliance.box.firstboot import run_firstboot
from appliance.health.exits import describe_returncode, record_server_exit
from appliance.settings import Settings

MAX_RESTARTS = 5
RESTART_WINDOW_S = 300.0
BACKOFF_S = (1, 2, 5, 10, 30)


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    next_start: float = 0.0
    gave_up: bool = False

    def start(self) -> None:
        self.proc = subprocess.Popen(self.args, stdout=self.log.open("a"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _common(settings: Settings) -> list[str]:
    args = ["--store", str(settings.store), "--state-dir", str(settings.state_dir)]
    if settings.trusted_key:
        args += ["--trusted-key", str(settings.trusted_key)]
    return args


SERVER_FLAGS = ("host", "port", "tls", "tls_cert", "tls_key", "max_queue", "prefill_chunk", "threads", "log_level")


def _pinned_flags(settings: Settings) -> list[str]:
    """Only what was given to `up` is passed on: the rest the server reads itself, the admin's settings included."""
    return [arg for name in SERVER_FLAGS if name in settings.pinned and getattr(settings, name) is not None
            for arg in ("--" + name.replace("_", "-"), str(getattr(settings, name)))]


def first_key(settings: Settings) -> str | None:
    """On the first `up`, make one API key so the box is usable at once; shown only this time."""
    with KeyStore(settings.keys_db) as keys:
        if any(not k.name.startswith(INTERNAL_KEY_PREFIX) for k in keys.list()):
            return None
        _, secret = keys.create("local-admin")
        return secret


def run_box(settings: Settings) -> None:
    console = Console(soft_wrap=True)
    report = run_firstboot(settings, new_setup_code=True)  # while unclaimed, each start shows a fresh code
    key = first_key(settings)
    scheme = "http" if settings.tls == "off" else "https"
    serve = [sys.executable, "-m", "appliance", "serve", *_common(settings), *_pinned_flags(settings)]
    if report.tls_fingerprint:
        console.print(f"TLS certificate SHA-256 fingerprint: [bold]{report.tls_fingerprint}[/]")
    monitor = [sys.executable, "-m", "appliance", "health", "run", *_common(settings), "--supervised"]
    if settings.pinned & {"host", "port", "tls"}:
        monitor += ["--server", settings.local_url()]  # else the monitor follows the admin's settings itself
    children = [Child("server", serve, settings.state_dir / "server.log"),
                Child("monitor", monitor, settings.state_dir / "health.log")]
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    console.print(f"box serving on {scheme}://{host}:{settings.port}/v1  (logs in {settings.state_dir})")
    if key:
        console.print(f"API key (shown once; more with `appliance keys create NAME`): {key}")
    if report.setup_code:
        console.print(f"console: {scheme}://{host}:{settings.port}/console  setup code (one use): "
                      f"[bold]{report.setup_code}[/]")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for c in children:
        c.start()
    try:
        while not stopping:
            now = time.monotonic()
            for c in children:
                if c.gave_up or c.proc is None or c.proc.poll() is None:
                    continue
                if c.next_start == 0.0:
                    c.restarts = [t for t in c.restarts if now - t < RESTART_WINDOW_S]
                    if len(c.restarts) >= MAX_RESTARTS:
                        c.gave_up = True
                        console.print(f"[red]{c.name} failed {MAX_RESTARTS} times in {RESTART_WINDOW_S:.0f} s; "
                                      f"not restarting it (see {c.log})[/]")
                        continue
                    delay = BACKOFF_S[min(len(c.restarts), len(BACKOFF_S) - 1)]
                    c.next_start = now + delay
                    how = describe_returncode(c.proc.returncode)
                    if c.name == "server":
                        record_server_exit(settings, how, f"the supervisor of `appliance up` (in {delay} s)")
                    console.print(f"{c.name} {how}; restarting in {delay} s")
                elif now >= c.next_start:
                    c.restarts.append(now)
                    c.next_start = 0.0
                    c.start()
            time.sleep(0.2)
    finally:
        for c in reversed(children):
            c.stop()
