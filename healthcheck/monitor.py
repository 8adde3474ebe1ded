"""The monitor loop: every check on its own period, the box's state as the worst of them, recovery."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from appliance.diagnostics.phonehome import PhoneHome
from appliance.errors import ApplianceError
from appliance.health.history import History
from appliance.health.run_now import take_check_run_request
from appliance.settings import ADMIN_FILE, PHONE_HOME_FIELDS, Settings, load_settings
from appliance.health.status import Result, Status
from appliance.store.manifest import Manifest
from appliance.store.verify import verify_store
from healthcheck.checks.base import Check
from healthcheck.checks.clock import ClockSanity
from healthcheck.checks.cpu import CpuAccelerator
from healthcheck.checks.disk import DiskSpace
from healthcheck.checks.golden import GoldenProbe
from healthcheck.checks.integrity import EngineIntegrity, StoreUnreadable
from healthcheck.checks.liveness import Liveness
from healthcheck.checks.nvidia import NvidiaAccelerator
from healthcheck.checks.readiness import Readiness
from healthcheck.checks.scheduler import SchedulerSignals
from healthcheck.client import make_client, monitor_key
from healthcheck.recovery import RecoveryPolicy, SupervisedRestarter, SystemdRestarter
from healthcheck.settings import HealthSettings

log = logging.getLogger(__name__)
RUN_NOW_POLL_S = 1.0
PHONE_HOME_SETTLE_S = 60.0  # after a start or the admin turning it on: let the checks run before the first summary


def _expected_text(store: Path, m: Manifest) -> str | None:
    if m.task != "chat" or not m.golden.expected_tokens:
        return None
    from appliance.engine.tokenizer import ChatTokenizer

    tok = ChatTokenizer(store / m.model_id / m.tokenizer, None)
    ids = m.golden.expected_tokens
    eos = set(m.engine.eos_token_ids)
    if ids and ids[-1] in eos:
        ids = ids[:-1]
    return tok.decode(ids)


def build_checks(s: HealthSettings, client) -> list[Check]:
    checks: list[Check] = [
        Liveness(client, s.liveness_period, s.liveness_timeout, s.restart_grace),
        Readiness(client, s.readiness_period, s.readiness_timeout),
        SchedulerSignals(client, s.metrics_period, 10.0, s.ttft_degraded_factor),
        DiskSpace({"state": s.state_dir, "store": s.store}, s.disk_period, s.disk_degraded_free_ratio,
                  s.disk_failed_free_ratio, s.disk_degraded_free_bytes, s.disk_failed_free_bytes),
    ]
    try:
        store = verify_store(s.store, s.trusted_key, host=None, check_hashes=False)
    except ApplianceError as exc:
        return [*checks, StoreUnreadable(str(exc)), CpuAccelerator(s.system_period, s.memory_degraded_ratio)]
    manifests = [vm.manifest for vm in store.models.values()]
    checks.append(EngineIntegrity(s.store, manifests, s.integrity_period))
    checks.append(ClockSanity(store.index.built_at, s.clock_period))
    if any(m.fingerprint.get("gpus") for m in manifests) or store.index.sku.startswith("nvidia"):
        checks.append(NvidiaAccelerator(s.system_period))
    else:
        checks.append(CpuAccelerator(s.system_period, s.memory_degraded_ratio))
    for m in manifests:
        checks.append(GoldenProbe(client, m, _expected_text(s.store, m), s.golden_period, s.golden_timeout))
    return checks


class Monitor:
    def __init__(self, settings: HealthSettings):
        self.s = settings
        self.history = History(settings.health_db, settings.history_rows)
        restarter = SupervisedRestarter(settings.server_pid_file, settings.state_dir) if settings.supervised \
            else SystemdRestarter(settings.server_unit, settings.state_dir)
        self.recovery = RecoveryPolicy(restarter, settings.failures_before_restart, settings.max_restarts,
                                       settings.restart_window, settings.restart_grace)
        self.latest: dict[str, Result] = {}
        self._lock = asyncio.Lock()
        self._wake: dict[str, asyncio.Event] = {}
        self._url = ""
        self.phone_home = PhoneHome(settings)
        self._phone_home_changed = asyncio.Event()

    async def _loop(self, check: Check) -> None:
        wake = self._wake.setdefault(check.name, asyncio.Event())
        while True:
            wake.clear()
            result, took = await check.run()
            async with self._lock:
                await self._record(check, result, took)
            # a check that is not ok is looked at again soon, so recovery shows without waiting a long period
            period = check.period if result.status == Status.OK else min(check.period, self.s.retry_period)
            try:
                await asyncio.wait_for(wake.wait(), period)
            except asyncio.TimeoutError:
                pass

    async def _run_now_requests(self) -> None:
        """Every check runs at once when the console asks (its button leaves a marker in the state directory)."""
        while True:
            if take_check_run_request(self.s.state_dir):
                self.history.action("monitor", "checks re-run at the admin's request")
                for event in self._wake.values():
                    event.set()
            await asyncio.sleep(RUN_NOW_POLL_S)

    async def _record(self, check: Check, result: Result, took: float) -> None:
        self.latest[check.name] = result
        with self.history.transaction():  # a reader never sees a failed check beside a box still ok
            if self.history.record(check.name, result, took):
                log.info("%s -> %s: %s", check.name, result.status.label, result.reason)
            self.history.record("box", self.box_state())
        if check.affects_server:
            self.recovery.observe(check.name, result.status == Status.FAILED)
        reasons = {n: r.reason for n, r in self.latest.items()}
        action = await asyncio.to_thread(self.recovery.decide, reasons)
        if action:
            with self.history.transaction():
                self.history.action("recovery", action)
                self.history.record("box", self.box_state())
            log.warning("recovery: %s", action)

    def box_state(self) -> Result:
        if self.recovery.gave_up_reason:
            return Result.failed(self.recovery.gave_up_reason)
        bad = sorted(((r.status, n, r.reason) for n, r in self.latest.items() if r.status != Status.OK),
                     key=lambda t: -t[0])
        if not bad:
            return Result.ok(f"all {len(self.latest)} checks ok")
        worst = bad[0][0]
        text = "; ".join(f"{n}: {reason}" for status, n, reason in bad if status == worst)
        return Result(worst, text)

    async def _phone_home(self, settle: float = PHONE_HOME_SETTLE_S) -> None:
        """Summaries to the vendor while the admin has it on; a failing or hanging vendor costs this task only."""
        wait, last = settle, None
        while True:
            self._phone_home_changed.clear()
            try:
                await asyncio.wait_for(self._phone_home_changed.wait(), wait)
                wait = settle
                continue
            except asyncio.TimeoutError:
                pass
            try:
                attempt = await self.phone_home.tick()
            except Exception as exc:  # a summary that cannot be built must not end the monitor
                log.exception("phone-home failed")
                self.history.action("phone-home", f"no summary sent: {type(exc).__name__}: {exc}")
                attempt = None
            if attempt is not None and attempt.outcome != last:
                self.history.action("phone-home", attempt.describe())
                last = attempt.outcome
            wait = self.s.phone_home_minutes * 60.0

    def _follow_phone_home(self) -> None:
        """The admin's phone-home choice applies without a restart; a flag or APPLIANCE_* variable still wins."""
        try:
            fresh = load_settings(type(self.s), state_dir=self.s.state_dir)
        except ApplianceError as exc:
            self.history.action("phone-home", f"settings not applied: {exc}")
            return
        changed = {n for n in PHONE_HOME_FIELDS if n not in self.s.pinned and getattr(fresh, n) != getattr(self.s, n)}
        if not changed:
            return
        for name in changed:
            setattr(self.s, name, getattr(fresh, name))
        self.history.action("phone-home", f"on: a summary every {self.s.phone_home_minutes} min to "
                                          f"{self.s.phone_home_url}" if self.s.phone_home else "off")
        self._phone_home_changed.set()

    def server_url(self) -> str:
        return self.s.server or load_settings(Settings, state_dir=self.s.state_dir).local_url()

    async def _follow_admin_settings(self, stop: asyncio.Event) -> None:
        """The admin may move the server (address, port, TLS): restart to follow (systemd or `up` starts us again)."""
        path = self.s.state_dir / ADMIN_FILE
        seen = path.stat().st_mtime if path.exists() else None
        while not stop.is_set():
            await asyncio.sleep(RUN_NOW_POLL_S)
            now = path.stat().st_mtime if path.exists() else None
            if now != seen and self.s.server is None and self.server_url() != self._url:
                self.history.action("monitor", f"the server moved to {self.server_url()}; the monitor restarts to follow")
                stop.set()
            elif now != seen:
                self._follow_phone_home()
            seen = now

    async def run(self) -> None:
        key = monitor_key(self.s)
        self._url = self.server_url()
        async with make_client(self._url, self.s, key) as client:
            checks = build_checks(self.s, client)
            self.history.clear_state()
            self.history.action("monitor", f"started with {len(checks)} checks: {', '.join(c.name for c in checks)}")
            tasks = [asyncio.create_task(self._loop(c), name=c.name) for c in checks]
            tasks.append(asyncio.create_task(self._run_now_requests(), name="run-now"))
            tasks.append(asyncio.create_task(self._phone_home(), name="phone-home"))
            stop = asyncio.Event()
            tasks.append(asyncio.create_task(self._follow_admin_settings(stop), name="follow-settings"))
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self.history.action("monitor", "stopped")
        self.history.close()
