"""Shared fixtures: the default store (built once per session by the real factory) and a real server."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from wait import wait_until

REPO = Path(__file__).resolve().parents[1]


@functools.cache
def sku_host_mismatch() -> str:
    """Why this host cannot run the default box's engines ('' when it can).

    The server refuses a store built for another SKU, and the default box is
    the AVX-512 (F, BW, VL, VNNI) CPU SKU.
    """
    from appliance.sku.detect import detect, mismatches
    from appliance.sku.profiles import load_profile

    sku = tomllib.loads((REPO / "appliance.toml").read_text())["box"]["sku"]
    reasons = mismatches(load_profile(sku), detect())
    return f"needs a host of SKU {sku} ({'; '.join(reasons)})" if reasons else ""


needs_avx512 = pytest.mark.skipif(bool(sku_host_mismatch()), reason=sku_host_mismatch() or "host matches the SKU")


def needs_root(why: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(os.geteuid() != 0, reason=f"needs root: {why}")


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    """Mark every test that needs the factory-built store as `store`, so `-m "not store"` runs the fast ones.

    item.fixturenames is the closure of requested fixtures, so tests that get
    the store through store_copy, server, client or a module's own fixture
    are marked too.
    """
    for item in items:
        if "default_store" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.store)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def default_store(tmp_path_factory) -> Path:
    """The default box's store, built from appliance.toml by `appliance build models`.

    Set APPLIANCE_TEST_STORE to reuse a store already built from this spec.
    """
    given = os.environ.get("APPLIANCE_TEST_STORE")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("store") / "store"
    proc = subprocess.run([sys.executable, "-m", "appliance", "build", "models", "--spec", str(REPO / "appliance.toml"),
                           "--out", str(out)], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.fixture()
def store_copy(default_store, tmp_path) -> Path:
    """A private copy of the store that a test may tamper with."""
    dst = tmp_path / "store"
    shutil.copytree(default_store, dst)
    return dst


@dataclass
class Server:
    url: str
    key: str
    state_dir: Path
    proc: subprocess.Popen
    log: Path

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", headers=self.headers(), timeout=10).text

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in self.metrics().splitlines():
            if line.startswith(name) and (not want or f"{{{want}}}" in line or want in line):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    return float(value)
        raise KeyError(name)


def create_key(state_dir: Path, name: str = "tests", *extra: str) -> str:
    out = subprocess.run([sys.executable, "-m", "appliance", "keys", "create", name, "--state-dir", str(state_dir),
                          *extra], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1].split()[-1]


def start_server(store: Path, state_dir: Path, *extra: str, scheme: str = "http", wait_ready: bool = True,
                 env: dict | None = None, port: int | None = None) -> Server:
    """``port``: a restarted box comes back where its clients (a router) knew it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key = create_key(state_dir)
    port = port or free_port()
    log = state_dir / "server.log"
    args = [sys.executable, "-m", "appliance", "serve", "--store", str(store), "--state-dir", str(state_dir),
            "--host", "127.0.0.1", "--port", str(port), *extra]
    if scheme == "http":
        args += ["--tls", "off"]
    proc = subprocess.Popen(args, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    server = Server(f"{scheme}://127.0.0.1:{port}", key, state_dir, proc, log)

    def answered() -> bool:
        """Ready, or settled as failed; with wait_ready=False any answer at all."""
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        r = httpx.get(f"{server.url}/readyz", headers=server.headers(), timeout=2, verify=False)
        return not wait_ready or r.status_code == 200 or r.json().get("state") == "failed"

    try:
        wait_until(answered, timeout=120, what=f"the server at {server.url} to be ready", interval=0.2,
                   ignore=(httpx.HTTPError,), details=lambda: log.read_text()[-3000:])
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        raise
    return server


def stop_process(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL if it has not gone after ``timeout`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def stop_server(server: Server) -> None:
    stop_process(server.proc, 15)


@pytest.fixture(scope="module")
def server(default_store, tmp_path_factory):
    s = start_server(default_store, tmp_path_factory.mktemp("state"))
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=server.key, max_retries=0, timeout=120)


CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture()
def vendor_pair(tmp_path) -> tuple[Path, Path]:
    """The vendor's diagnostics key pair (private, public), as `appliance diagnostics keygen` makes it."""
    from appliance.diagnostics.encryption import keygen

    return keygen(tmp_path / "vendor" / "diag")


@pytest.fixture()
def box_settings(tmp_path, vendor_pair):
    """A box's settings over a fresh state dir and a minimal store (no build), bundles encrypted to ``vendor_pair``."""
    from appliance.settings import Settings
    from minimal_store import minimal_store

    return Settings(state_dir=tmp_path / "state", store=minimal_store(tmp_path / "store"), vendor_key=vendor_pair[1],
                    tls="off")
