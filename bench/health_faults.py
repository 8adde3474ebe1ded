"""Health monitor fault timings: how fast the box notices each fault, and how fast it is well again.

The published figures must be rerunnable from one command, not pieced
together from a test run and hand edits. This script starts its own box
(``python -m appliance up`` on loopback, TLS off) with the short check
periods the fault tests use, injects each fault into it, and reads the
monitor's SQLite history (STATE/health.sqlite) directly, so it does not
depend on where the monitor's Python modules live. Times come from the
history's timestamps, against the wall-clock time of the injection.

Faults (a fresh box for every run of every fault):

* ``kill -9``: SIGKILL the server; detected when server.liveness fails,
  recovered when the restarted server's liveness and readiness are ok;
* ``SIGSTOP``: stop the server; the monitor must kill the hung process;
  same figures;
* ``engine byte changed``: flip one byte of the chat engine's largest file
  in a private copy of the store; detected when store.integrity fails;
  the byte is put back at once, recovered when it is ok again;
* ``state disk full``: the state directory on a 16 MiB tmpfs in a private
  mount namespace (``unshare``; a user namespace too when not root), filled
  to 2 MiB free with the disk thresholds scaled down; detected when
  ``disk`` is degraded, the filler is deleted at once, recovered when ok;
* ``golden mismatch``: the chat model's golden answer changed in a private,
  re-signed copy of the store, then the monitor restarted (SIGTERM; the
  supervisor starts it again); detected when golden.<model> fails, timed
  from the new monitor's start.

It also records ``systemd-analyze security --offline=true`` exposure for
the image's units. Results: bench/results/health_faults-<UTC date>.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, machine_info, utc_now, write_result  # noqa: E402

OK, DEGRADED, FAILED = 0, 1, 2
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
DISK_MIB = 16
DISK_ENV = {"APPLIANCE_HEALTH_DISK_DEGRADED_FREE_BYTES": str(4 * 2**20),
            "APPLIANCE_HEALTH_DISK_FAILED_FREE_BYTES": str(2**20)}
SLUGS = {"kill9": "kill -9", "sigstop": "SIGSTOP", "byte": "engine byte changed", "disk": "state disk full",
         "golden": "golden mismatch"}


class Skipped(Exception):
    """The fault cannot be injected on this machine; the message says why."""


class TimedOut(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class History:
    """The monitor's state and history tables, read with plain sqlite3."""

    def __init__(self, path: Path):
        self.path = path

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        if not self.path.exists():
            return []
        try:
            con = sqlite3.connect(self.path, timeout=5)
            try:
                return con.execute(sql, args).fetchall()
            finally:
                con.close()
        except sqlite3.Error:
            return []

    def state(self, name: str) -> tuple[int, str] | None:
        rows = self._query("SELECT status, reason FROM state WHERE name=?", (name,))
        return rows[0] if rows else None

    def status(self, name: str) -> int | None:
        s = self.state(name)
        return s[0] if s else None

    def states(self) -> dict[str, tuple[int, str]]:
        return {n: (s, r) for n, s, r in self._query("SELECT name, status, reason FROM state")}

    def transitions(self, name: str, since: float, new: int | None = None) -> list[tuple[float, int, str]]:
        """(at, new status, reason) of the check's transitions at or after ``since``, oldest first."""
        sql = "SELECT at, new, reason FROM history WHERE kind='transition' AND name=? AND at>=?"
        args: tuple = (name, since)
        if new is not None:
            sql += " AND new=?"
            args += (new,)
        return self._query(sql + " ORDER BY id", args)

    def actions(self, name: str, since: float) -> list[tuple[float, str]]:
        return self._query("SELECT at, reason FROM history WHERE kind='action' AND name=? AND at>=? ORDER BY id",
                           (name, since))


class Box:
    """``appliance up`` in its own session."""

    def __init__(self, args, store: Path, state: Path, env: dict | None = None):
        self.state, self.port = state, free_port()
        state.mkdir(parents=True, exist_ok=True)
        self.log_path = state.parent / f"{state.name}-up.log"
        cmd = [str(args.appliance_python), "-m", "appliance", "up", "--store", str(store), "--state-dir", str(state),
               "--host", "127.0.0.1", "--port", str(self.port), "--tls", "off"]
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, **FAST, **(env or {})})
        self.h = History(state / "health.sqlite")
        self.timeout = args.timeout

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait(self, what: str, predicate, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise TimedOut(f"the box exited ({self.proc.returncode}) while waiting for {what}:\n{self.log_tail()}")
            try:
                if predicate():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        states = {n: s for n, s in self.h.states().items() if s[0] != OK}
        raise TimedOut(f"timed out waiting for {what}; checks not ok: {states}\n{self.log_tail()}")

    def wait_ok(self, chat_model: str, timeout: float) -> None:
        self.wait("box ok", lambda: self.h.status("box") == OK and self.h.status(f"golden.{chat_model}") == OK,
                  timeout)

    def server_pid(self) -> int:
        return int((self.state / "server.pid").read_text())

    def children(self) -> list[tuple[int, str]]:
        """(pid, command line) of the supervisor's direct children."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == self.proc.pid:
                    out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except (OSError, IndexError, ValueError):
                continue
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        self.log.close()


def _since(at: float | None, t0: float) -> float | None:
    return round(at - t0, 3) if at is not None else None


def _first(rows: list) -> float | None:
    return rows[0][0] if rows else None


def _last(rows: list) -> float | None:
    return rows[-1][0] if rows else None


# -- the faults ----------------------------------------------------------------------------------

def fault_server_signal(box: Box, sig: int) -> dict:
    """SIGKILL or SIGSTOP the server: liveness fails, the server is restarted, liveness and readiness ok again."""
    old = box.server_pid()
    t0 = time.time()
    os.kill(old, sig)
    try:
        box.wait("server.liveness failed", lambda: box.h.transitions("server.liveness", t0, FAILED))
        box.wait("a new server, live and ready", lambda: box.server_pid() != old
                 and box.h.status("server.liveness") == OK and box.h.status("server.readiness") == OK)
    finally:
        if sig == signal.SIGSTOP:
            try:
                os.kill(old, signal.SIGCONT)
            except ProcessLookupError:
                pass
    box.wait("box ok", lambda: box.h.status("box") == OK)
    failed = box.h.transitions("server.liveness", t0, FAILED)
    ok_at = [_last(box.h.transitions(c, failed[0][0], OK)) for c in ("server.liveness", "server.readiness")]
    return {"detect_s": _since(failed[0][0], t0), "recovered_s": _since(max(a for a in ok_at if a), t0),
            "box_ok_s": _since(_last(box.h.transitions("box", failed[0][0], OK)), t0),
            "reason": failed[0][2], "recovery": [r for _, r in box.h.actions("recovery", t0)][:2]}


def _chat_engine_file(store: Path, chat_model: str) -> Path:
    files = json.loads((store / chat_model / "manifest.json").read_text())["files"]
    return store / chat_model / max(files, key=lambda f: f["size"])["path"]


def fault_engine_byte(box: Box, store: Path, chat_model: str) -> dict:
    """Flip a byte in the middle of the largest engine file (in place), then put it back."""
    data = _chat_engine_file(store, chat_model)
    offset = data.stat().st_size // 2

    def poke(value: bytes) -> None:
        with data.open("r+b") as fh:
            fh.seek(offset)
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())

    box.wait("store.integrity ok", lambda: box.h.status("store.integrity") == OK)
    with data.open("rb") as fh:
        fh.seek(offset)
        original = fh.read(1)
    t0 = time.time()
    poke(bytes([original[0] ^ 0xFF]))
    try:
        box.wait("store.integrity failed", lambda: box.h.status("store.integrity") == FAILED)
    finally:
        t1 = time.time()
        poke(original)
    box.wait("store.integrity ok again", lambda: box.h.transitions("store.integrity", t1, OK))
    failed = box.h.transitions("store.integrity", t0, FAILED)
    ok_at = _first(box.h.transitions("store.integrity", t1, OK))
    return {"detect_s": _since(failed[0][0], t0), "recovered_s": _since(ok_at, t0),
            "undone_to_ok_s": _since(ok_at, t1), "reason": failed[0][2],
            "file": f"{chat_model}/{data.name}", "offset": offset}


def namespace_wrapper(state: Path) -> list[str]:
    """A command prefix that mounts a small tmpfs on ``state`` in a private mount namespace, or Skipped.

    The box and the code that watches it both run behind it: SQLite resolves /proc/PID/root to "/", so
    the history cannot be read from outside the namespace.
    """
    if not shutil.which("unshare"):
        raise Skipped("needs unshare(1) (util-linux) for a private tmpfs; not installed")
    ns = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        ns[1:1] = ["--user", "--map-root-user"]
    mount = ["sh", "-c", f'mount -t tmpfs -o size={DISK_MIB}m tmpfs "$0" && exec "$@"', str(state)]
    probe_dir = Path(tempfile.mkdtemp(prefix="health_faults-probe-"))
    try:
        probe = subprocess.run(ns + mount[:3] + [str(probe_dir), "true"], capture_output=True, text=True, timeout=30)
    finally:
        probe_dir.rmdir()
    if probe.returncode != 0:
        why = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
        raise Skipped(f"cannot mount a private tmpfs for the state directory ({' '.join(ns)}: {why}); "
                      "run as root or enable unprivileged user namespaces")
    return ns + mount


def fault_disk_full(box: Box) -> dict:
    """Fill the tmpfs state disk to 2 MiB free (degraded under 4 MiB), then delete the filler."""
    box.wait("disk ok", lambda: box.h.status("disk") == OK)
    filler = box.state / "filler"
    st = os.statvfs(box.state)
    size = st.f_bavail * st.f_frsize - 2 * 2**20
    t0 = time.time()
    with filler.open("wb") as fh:
        chunk = bytes(1 << 16)
        for _ in range(size // len(chunk)):
            fh.write(chunk)
    try:
        box.wait("disk degraded", lambda: box.h.status("disk") == DEGRADED)
    finally:
        t1 = time.time()
        filler.unlink()
    box.wait("disk ok again", lambda: box.h.transitions("disk", t1, OK))
    bad = box.h.transitions("disk", t0, DEGRADED)
    ok_at = _first(box.h.transitions("disk", t1, OK))
    return {"detect_s": _since(bad[0][0], t0), "recovered_s": _since(ok_at, t0), "undone_to_ok_s": _since(ok_at, t1),
            "reason": bad[0][2], "disk_mib": DISK_MIB, "filled_to_free_mib": 2}


def _import_first(names: list[str]):
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise Skipped(f"none of {names} can be imported (moved?); update bench/health_faults.py")


def resign_with_other_golden(store: Path, chat_model: str) -> list[int]:
    """Change the chat model's golden answer in ``store`` and re-sign it with the development key."""
    writer = _import_first(["appliance.factory.store_writer", "appliance.build.store_writer"])
    manifest_mod = _import_first(["appliance.store.manifest"])
    signing = _import_first(["appliance.store.signing"])
    m = manifest_mod.Manifest.model_validate_json((store / chat_model / "manifest.json").read_text())
    tokens = list(m.golden.expected_tokens)
    tokens[0] = tokens[0] + 1 if tokens[0] + 1 < m.engine.vocab_size else tokens[0] - 1
    m = m.model_copy(update={"golden": m.golden.model_copy(update={"expected_tokens": tokens})})
    index = manifest_mod.StoreIndex.model_validate_json((store / "index.json").read_text())
    manifests = []
    for e in index.models:
        mm = m if e.id == chat_model else \
            manifest_mod.Manifest.model_validate_json((store / e.id / "manifest.json").read_text())
        manifests.append((mm, writer.write_manifest(store / e.id, mm)))
    key, _ = signing.signing_key_for_build(None)
    writer.write_index(store, index.box, index.sku, manifests, key)
    return tokens


def check_dev_signed(store: Path) -> None:
    """Re-signing is only possible with the key the store was signed with: this machine's development key."""
    signing = _import_first(["appliance.store.signing"])
    pub = signing.dev_public_key_path()
    want = json.loads((store / "index.json").read_text()).get("signing_key_id")
    have = signing.key_id(signing.load_public_key(pub)) if pub.is_file() else None
    if want != have:
        raise Skipped(f"the store is signed with key {want}, not this machine's development key ({have}); "
                      "re-signing it with a changed golden answer needs that key")


def fault_golden(box: Box, store: Path, chat_model: str) -> dict:
    """Re-sign the store with a different golden answer, restart the monitor, time until golden fails."""
    name = f"golden.{chat_model}"
    tokens = resign_with_other_golden(store, chat_model)
    monitors = [pid for pid, cmd in box.children() if " health " in f" {cmd} "]
    if not monitors:
        raise TimedOut(f"no monitor process under the supervisor (pid {box.proc.pid})")
    t0 = time.time()
    os.kill(monitors[0], signal.SIGTERM)
    box.wait("monitor restarted", lambda: [a for a in box.h.actions("monitor", t0) if a[1].startswith("started")])
    started = [a for a in box.h.actions("monitor", t0) if a[1].startswith("started")][0][0]
    box.wait(f"{name} failed", lambda: box.h.transitions(name, started, FAILED))
    failed = box.h.transitions(name, started, FAILED)
    return {"detect_s": _since(failed[0][0], started), "monitor_restart_s": _since(started, t0),
            "reason": failed[0][2], "expected_tokens_now": tokens}


# -- one run of one fault ------------------------------------------------------------------------

def run_fault(fault: str, args, tmp: Path, n: int, chat_model: str) -> dict:
    root = tmp / f"{next(k for k, v in SLUGS.items() if v == fault)}-{n}"
    root.mkdir()
    store = args.store
    if fault == "golden mismatch":
        check_dev_signed(args.store)
    if fault in ("engine byte changed", "golden mismatch"):
        store = root / "store"
        shutil.copytree(args.store, store)
    if fault == "state disk full":
        try:
            return disk_fault_in_namespace(args, root / "state")
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    box = Box(args, store, root / "state")
    try:
        box.wait_ok(chat_model, args.ready_timeout)
        if fault == "kill -9":
            return fault_server_signal(box, signal.SIGKILL)
        if fault == "SIGSTOP":
            return fault_server_signal(box, signal.SIGSTOP)
        if fault == "engine byte changed":
            return fault_engine_byte(box, store, chat_model)
        return fault_golden(box, store, chat_model)
    finally:
        box.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def disk_fault_in_namespace(args, state: Path) -> dict:
    """This script again (``--disk-in-namespace``) behind the tmpfs wrapper; its last stdout line is the run."""
    state.mkdir(parents=True, exist_ok=True)
    cmd = namespace_wrapper(state) + [
        sys.executable, str(Path(__file__).resolve()), "--store", str(args.store), "--disk-in-namespace", str(state),
        "--timeout", str(args.timeout), "--ready-timeout", str(args.ready_timeout),
        "--appliance-python", str(args.appliance_python)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.ready_timeout + 4 * args.timeout + 120)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise TimedOut(f"the disk fault helper exited {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


def disk_fault_here(args, chat_model: str) -> dict:
    box = Box(args, args.store, args.disk_in_namespace, DISK_ENV)
    try:
        box.wait_ok(chat_model, args.ready_timeout)
        return fault_disk_full(box)
    except TimedOut as exc:
        return {"error": str(exc)[:2000]}
    finally:
        box.stop()


# -- the other blocks ----------------------------------------------------------------------------

def check_settings() -> dict:
    """The periods this run used, beside the monitor's and supervisor's shipped defaults (seconds)."""
    out: dict = {k.removeprefix("APPLIANCE_HEALTH_").lower() + "_s": float(v) for k, v in FAST.items()}
    try:
        fields = _import_first(["appliance.health.settings", "healthcheck.settings"]).HealthSettings.model_fields
        shipped = {n: f.default for n, f in fields.items()
                   if isinstance(f.default, (int, float)) and not isinstance(f.default, bool)}
        out.update({k: shipped.get(k) for k in ("failures_before_restart", "max_restarts", "restart_window",
                                                 "retry_period")})
        out["shipped_defaults"] = shipped
    except Skipped as exc:
        out["shipped_defaults"] = f"not read: {exc}"
    try:
        out["supervisor_backoff_s"] = list(_import_first(["appliance.box.supervisor"]).BACKOFF_S)
    except (Skipped, AttributeError) as exc:
        out["supervisor_backoff_s"] = f"not read: {exc}"
    out["disk_full"] = {"tmpfs_mib": DISK_MIB, **{k.removeprefix("APPLIANCE_HEALTH_").lower(): int(v)
                                                   for k, v in DISK_ENV.items()}}
    return out


def systemd_exposure(units_dir: Path) -> dict:
    """``systemd-analyze security --offline=true`` overall exposure per unit file (0 safest, 10 worst)."""
    units = sorted(units_dir.glob("*.service"))
    if not units:
        return {"not_measured": f"no unit files in {units_dir}"}
    if not shutil.which("systemd-analyze"):
        return {"not_measured": "systemd-analyze is not installed"}
    out: dict = {}
    for unit in units:
        proc = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                              capture_output=True, text=True, timeout=120)
        m = re.search(r"Overall exposure level for \S+: ([\d.]+)", proc.stdout + proc.stderr)
        out[unit.name] = float(m.group(1)) if m else f"not measured: exit {proc.returncode}: " \
                                                      f"{(proc.stderr.strip().splitlines() or [''])[-1][:200]}"
    return out


def summarise(runs: list[dict]) -> dict:
    """Medians of the timed figures over the runs, and every run as it was."""
    out: dict = {}
    for key in ("detect_s", "recovered_s", "undone_to_ok_s", "box_ok_s", "monitor_restart_s"):
        xs = [r[key] for r in runs if r.get(key) is not None]
        if xs:
            out[key] = round(statistics.median(xs), 2)
    out["runs"] = runs
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--store", type=Path, required=True, help="model store built by the factory (not modified)")
    p.add_argument("--runs", type=int, default=3, help="runs per fault, each on a fresh box (median reported)")
    p.add_argument("--quick", action="store_true",
                   help="one run per fault, for a smoke test; committed results come from full runs")
    p.add_argument("--faults", default=",".join(SLUGS), help=f"comma list of {', '.join(SLUGS)}")
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for each detection or recovery")
    p.add_argument("--ready-timeout", type=float, default=300.0, help="seconds to wait for a new box to be ok")
    p.add_argument("--appliance-python", type=Path, default=Path(sys.executable),
                   help="interpreter with the appliance installed")
    p.add_argument("--units-dir", type=Path, default=REPO / "image-build" / "systemd",
                   help="systemd unit files for the exposure figures")
    p.add_argument("--keep", action="store_true", help="keep each run's state, store copy and logs")
    p.add_argument("--out", type=Path, default=None, help="result file (default bench/results/health_faults-DATE.json)")
    p.add_argument("--disk-in-namespace", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.runs = 1
    names = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(names) - set(SLUGS))
    if unknown:
        p.error(f"unknown faults {unknown}; use {', '.join(SLUGS)}")
    args.faults = [SLUGS[n] for n in SLUGS if n in names]
    args.store = args.store.resolve()
    if not (args.store / "index.json").is_file():
        p.error(f"{args.store} is not a model store (no index.json)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = utc_now()
    t_start = time.perf_counter()
    index = json.loads((args.store / "index.json").read_text())
    chats = [m["id"] for m in index["models"] if m.get("task") == "chat"]
    if not chats:
        raise SystemExit(f"{args.store} has no chat model; the golden and engine faults need one")
    chat_model = chats[0]
    if args.disk_in_namespace:
        print(json.dumps(disk_fault_here(args, chat_model)), flush=True)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="health_faults-"))
    faults: dict = {}
    try:
        for fault in args.faults:
            runs, note = [], None
            for n in range(args.runs):
                print(f"{fault}: run {n + 1}/{args.runs} ...", flush=True)
                try:
                    r = run_fault(fault, args, tmp, n, chat_model)
                except Skipped as exc:
                    note = f"skipped: {exc}"
                    break
                except TimedOut as exc:
                    r = {"error": str(exc)[:2000]}
                except Exception as exc:  # one broken run must not lose the other faults' figures
                    r = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
                runs.append(r)
                figures = ", ".join(f"{k} {v}" for k, v in r.items() if k.endswith("_s"))
                print(f"  {figures or 'error: ' + r.get('error', '')[:300]}", flush=True)
            faults[fault] = {"skipped": note} if note else summarise(runs)
            if note:
                print(f"  {note}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"state, store copies and logs kept in {tmp}")
    sku = index.get("sku", "unknown")
    machine = machine_info()
    machine["accelerator"] = f"none ({sku} SKU)" if sku.startswith("cpu") else sku
    result = {
        "benchmark": "health_faults",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - t_start, 1),
        "machine": machine,
        "parameters": {"runs": args.runs, "quick": args.quick, "faults": args.faults,
                       "box": "python -m appliance up --host 127.0.0.1 --tls off, a fresh state dir per run",
                       "timed_from": "history timestamps (STATE/health.sqlite) against the injection's wall clock"},
        "store": {"path": str(args.store), "box": index.get("box"), "sku": sku, "built_at": index.get("built_at"),
                  "signing_key_id": index.get("signing_key_id"), "chat_model": chat_model},
        "check_settings": check_settings(),
        "faults": faults,
        "systemd_analyze_security_exposure": systemd_exposure(args.units_dir),
        "meaning": {
            "detect_s": "fault injected -> the monitor records the check failed/degraded (golden mismatch: from "
                        "the restarted monitor's start)",
            "recovered_s": "fault injected -> check ok again (server restarted, live and ready where it applies; "
                           "the operator's undo done at once where the box cannot cure it)",
            "undone_to_ok_s": "the fault undone (byte restored, filler deleted) -> check ok again",
            "box_ok_s": "fault injected -> the box's overall state ok again",
            "monitor_restart_s": "monitor sent SIGTERM -> the supervisor's new monitor started",
            "systemd_analyze_security_exposure": "overall exposure, 0 (safest) to 10",
        },
    }
    path = write_result("health_faults", result, args.out)
    print()
    for fault, block in faults.items():
        figures = ", ".join(f"{k} {v}" for k, v in block.items() if k.endswith("_s"))
        print(f"{fault:20s} {block.get('skipped') or figures or 'no figures (see runs)'}")
    print(f"systemd exposure: {result['systemd_analyze_security_exposure']}")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
