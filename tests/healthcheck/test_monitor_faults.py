"""The monitor against a real box: each fault is detected with an actionable reason, and recovered where it can be.

The box runs as `appliance up` (server + monitor under the supervisor) with
short check periods; the tests read the monitor's SQLite history, as
`appliance health` does. How long detection and recovery take is measured by
bench/health_faults.py, not asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import free_port, needs_avx512, needs_root, stop_process
from appliance.health.history import snapshot
from wait import wait_until

pytestmark = needs_avx512

FAST = {
    "APPLIANCE_HEALTH_LIVENESS_PERIOD": "0.5",
    "APPLIANCE_HEALTH_LIVENESS_TIMEOUT": "1.0",
    "APPLIANCE_HEALTH_READINESS_PERIOD": "0.5",
    "APPLIANCE_HEALTH_INTEGRITY_PERIOD": "0.3",
    "APPLIANCE_HEALTH_DISK_PERIOD": "0.5",
    "APPLIANCE_HEALTH_GOLDEN_PERIOD": "2",
    "APPLIANCE_HEALTH_METRICS_PERIOD": "2",
    "APPLIANCE_HEALTH_RESTART_GRACE": "8",
}


class Box:
    def __init__(self, store: Path, state: Path, tls: str = "off", env: dict | None = None):
        self.state = state
        self.port = free_port()
        self.log = state.parent / f"{state.name}-up.log"
        state.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "up", "--store", str(store), "--state-dir", str(state),
             "--host", "127.0.0.1", "--port", str(self.port), "--tls", tls],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **FAST, **(env or {})})

    def snap(self) -> dict:
        return snapshot(self.state / "health.sqlite", 200)

    def check(self, name: str) -> dict | None:
        return next((c for c in self.snap()["checks"] if c["name"] == name), None)

    def wait(self, what: str, predicate, timeout: float = 90.0) -> None:
        """Until ``predicate(box)`` holds; errors count as not yet (no history or pid file while starting)."""
        wait_until(lambda: predicate(self), timeout=timeout, what=what, interval=0.1, ignore=(Exception,),
                   details=self._diagnostics)

    def _diagnostics(self) -> str:
        try:
            health = json.dumps(self.snap(), indent=1)[:3000]
        except Exception as exc:
            health = f"unreadable ({exc!r})"
        return f"health: {health}\nlog: {self.log.read_text()[-2000:]}"

    def status(self, name: str) -> str | None:
        c = self.check(name)
        return c and c["status"]

    def box_status(self) -> str:
        """The box's state is written just after the check that changed it: wait on both, not the check alone."""
        return self.snap()["box"]["status"]

    def server_pid(self) -> int:
        return int((self.state / "server.pid").read_text())

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture()
def box(default_store, tmp_path):
    b = Box(default_store, tmp_path / "state")
    try:
        b.wait("box ok", lambda b: b.snap()["box"]["status"] == "ok" and b.status("golden.smollm2-135m-instruct") == "ok")
        yield b
    finally:
        b.stop()


def _transitions(b: Box, name: str) -> list[str]:
    return [h["new"] for h in reversed(b.snap()["history"]) if h["name"] == name and h["kind"] == "transition"]


def test_kill9_is_detected_and_recovered_by_restart(box):
    old = box.server_pid()
    os.kill(old, signal.SIGKILL)
    box.wait("liveness failed, and the box", lambda b: b.status("server.liveness") == "failed"
             and b.box_status() == "failed")
    assert "not listening" in box.check("server.liveness")["reason"]
    box_states = [h for h in box.snap()["history"] if h["name"] == "box" and h["kind"] == "transition"]
    assert box_states[0]["new"] == "failed" and "server.liveness" in box_states[0]["reason"]
    box.wait("recovered", lambda b: b.server_pid() != old and b.status("server.liveness") == "ok"
             and b.status("server.readiness") == "ok")
    assert _transitions(box, "server.liveness")[-2:] == ["failed", "ok"]
    box.wait("box ok again", lambda b: b.snap()["box"]["status"] == "ok")
    restarts = box.snap()["restarts"]
    assert restarts["count"] == 1, restarts
    assert "was killed by signal 9 (SIGKILL)" in restarts["last"]["reason"] and "supervisor" in restarts["last"]["reason"]
    shown = subprocess.run([sys.executable, "-m", "appliance", "health", "--state-dir", str(box.state)],
                           capture_output=True, text=True, timeout=60).stdout
    assert "server restarts: 1 (last" in shown and "SIGKILL" in shown


def test_sigstop_fails_liveness_within_timeout_and_is_restarted(box):
    old = box.server_pid()
    os.kill(old, signal.SIGSTOP)
    try:
        box.wait("liveness failed", lambda b: b.status("server.liveness") == "failed")
        assert "did not answer /healthz within 1 s" in box.check("server.liveness")["reason"]
        box.wait("restarted", lambda b: b.server_pid() != old and b.status("server.readiness") == "ok")
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    actions = [h["reason"] for h in box.snap()["history"] if h["kind"] == "action" and h["name"] == "recovery"]
    assert any("killed hung server pid" in a for a in actions)
    restarts = box.snap()["restarts"]
    assert restarts["count"] == 1, restarts  # one record, naming the probe, not the SIGKILL the monitor used
    assert "restarted by the health monitor (server.liveness: server did not answer /healthz" in restarts["last"]["reason"]


def test_changed_engine_byte_is_named(store_copy, tmp_path):
    b = Box(store_copy, tmp_path / "state2")
    try:
        b.wait("integrity ok", lambda b: b.status("store.integrity") == "ok")
        data = store_copy / "smollm2-135m-instruct" / "model.onnx.data"

        def poke(value: bytes) -> None:  # in place: the monitor never sees a half-written file
            with data.open("r+b") as fh:
                fh.seek(123456)
                fh.write(value)

        original = data.read_bytes()[123456:123457]
        poke(bytes([original[0] ^ 0xFF]))
        b.wait("integrity failed, and the box", lambda b: b.status("store.integrity") == "failed"
               and b.box_status() == "failed")
        reason = b.check("store.integrity")["reason"]
        assert "engine smollm2-135m-instruct/model.onnx.data changed on disk since build" in reason
        assert "reinstall the store" in reason
        assert b.snap()["box"]["status"] == "failed"
        poke(original)
        b.wait("integrity ok again", lambda b: b.status("store.integrity") == "ok")
    finally:
        b.stop()


@needs_root("mounts a 16 MiB tmpfs as the state directory to fill it")
def test_full_state_disk_is_degraded_with_reason(default_store, tmp_path):
    state = tmp_path / "small-state"
    state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(state)]).returncode != 0:
        pytest.fail("could not mount a tmpfs for the state directory even as root (a container without "
                    "CAP_SYS_ADMIN?)")
    b = None
    try:
        # thresholds scaled to a 16 MiB disk: degraded under 4 MiB free, failed under 1 MiB
        b = Box(default_store, state, env={"APPLIANCE_HEALTH_DISK_DEGRADED_FREE_BYTES": str(4 * 2**20),
                                           "APPLIANCE_HEALTH_DISK_FAILED_FREE_BYTES": str(2**20)})
        b.wait("disk ok", lambda b: b.status("disk") == "ok")
        filler = state / "filler"
        free = os.statvfs(state).f_bavail * os.statvfs(state).f_frsize
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64K", f"count={(free - 2 * 2**20) // 65536}"],
                       capture_output=True)
        b.wait("disk degraded, and the box", lambda b: b.status("disk") == "degraded" and b.box_status() == "degraded")
        reason = b.check("disk")["reason"]
        assert f"on {state}" in reason and "MiB free" in reason and "free space soon" in reason
        assert b.snap()["box"]["status"] == "degraded"
        filler.unlink()
        b.wait("disk ok again", lambda b: b.status("disk") == "ok")
    finally:
        if b:
            b.stop()
        subprocess.run(["umount", "-l", str(state)])


def test_golden_mismatch_when_the_served_engine_is_not_the_manifest_s(default_store, store_copy, tmp_path):
    """The server runs one engine; the monitor holds a store whose manifest describes another (re-signed)."""
    from appliance.factory.store_writer import write_index, write_manifest
    from appliance.store.manifest import Manifest, StoreIndex
    from appliance.store.signing import signing_key_for_build

    mid = "smollm2-135m-instruct"
    m = Manifest.model_validate_json((store_copy / mid / "manifest.json").read_text())
    other = m.golden.model_copy(update={"expected_tokens": [504, 3458, 314, 5248, 2]})
    m = m.model_copy(update={"golden": other})
    index = StoreIndex.model_validate_json((store_copy / "index.json").read_text())
    manifests = []
    for e in index.models:
        mm = m if e.id == mid else Manifest.model_validate_json((store_copy / e.id / "manifest.json").read_text())
        manifests.append((mm, write_manifest(store_copy / e.id, mm)))
    write_index(store_copy, index.box, index.sku, manifests, signing_key_for_build(None)[0])

    from conftest import start_server, stop_server

    server = start_server(default_store, tmp_path / "srv")
    subprocess.run([sys.executable, "-m", "appliance", "firstboot", "--state-dir", str(server.state_dir), "--tls",
                    "off"], capture_output=True, text=True, check=True)  # the monitor's credential
    env = {**os.environ, **FAST}
    mon = subprocess.Popen([sys.executable, "-m", "appliance", "health", "run", "--store", str(store_copy),
                            "--state-dir", str(server.state_dir), "--server", server.url, "--supervised"],
                           env=env, stdout=(tmp_path / "mon.log").open("w"), stderr=subprocess.STDOUT)
    try:
        b = Box.__new__(Box)
        b.state, b.log = server.state_dir, tmp_path / "mon.log"
        b.wait("golden failed", lambda b: b.status(f"golden.{mid}") == "failed", timeout=60)
        reason = b.check(f"golden.{mid}")["reason"]
        assert f"model {mid} answers its golden prompt differently from the factory" in reason
        assert b.status("golden.all-minilm-l6-v2") == "ok"
    finally:
        mon.terminate()
        mon.wait(timeout=20)
        stop_server(server)


def test_appliance_health_prints_state_and_transitions(box):
    out = subprocess.run([sys.executable, "-m", "appliance", "health", "--state-dir", str(box.state)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "box: ok" in out.stdout and "server.liveness" in out.stdout and "transitions" in out.stdout
    data = json.loads(subprocess.run([sys.executable, "-m", "appliance", "health", "--state-dir", str(box.state),
                                      "--json"], capture_output=True, text=True, check=True).stdout)
    assert data["box"]["status"] == "ok"
    from conftest import create_key

    key = create_key(box.state, "console")
    r = httpx.get(f"http://127.0.0.1:{box.port}/health/monitor", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    served = r.json()
    assert served["box"]["status"] == "ok" and {c["name"] for c in served["checks"]} == {c["name"] for c in data["checks"]}
    assert {"server.liveness", "server.readiness", "store.integrity", "disk", "clock", "accelerator.cpu",
            "server.scheduler", "golden.smollm2-135m-instruct"} <= {c["name"] for c in data["checks"]}
