"""The machine: accelerator (CPU via psutil, NVIDIA via NVML), disk space, engine integrity, clock."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from appliance.store.manifest import Manifest
from appliance.store.verify import file_fault
from appliance.health.status import Result, Status
from healthcheck.checks.base import Check


class CpuAccelerator(Check):
    name = "accelerator.cpu"

    def __init__(self, period: float, memory_degraded_ratio: float):
        self.period, self.timeout, self.memory_ratio = period, 10.0, memory_degraded_ratio

    async def probe(self) -> Result:
        load1, _, _ = os.getloadavg()
        cores = psutil.cpu_count() or 1
        mem = psutil.virtual_memory()
        values = {"load1": round(load1, 2), "cores": cores, "memory_used_ratio": round(mem.percent / 100, 3)}
        temps = {}
        try:
            for chip, sensors in (psutil.sensors_temperatures() or {}).items():
                for s in sensors:
                    if s.current:
                        temps[f"{chip}/{s.label or 'temp'}"] = s.current
        except (AttributeError, OSError):
            pass
        if temps:
            values["max_temp_c"] = max(temps.values())
        problems = []
        if mem.percent / 100 >= self.memory_ratio:
            problems.append(f"memory {mem.percent:.0f}% used: requests may fail; lower max_batch or context")
        hot = [k for k, t in temps.items() if t >= 95]
        if hot:
            problems.append(f"CPU at {max(temps.values()):.0f} °C ({hot[0]}): check cooling and airflow")
        if load1 > 4 * cores:
            problems.append(f"load {load1:.1f} on {cores} cores: something besides the server is busy")
        return Result.degraded("; ".join(problems), **values) if problems else Result.ok("cpu normal", **values)


class NvidiaAccelerator(Check):
    """Temperature, power, memory, utilisation, ECC, XID errors and throttling per GPU via NVML.

    NVML stays initialised for the monitor's lifetime so XID events registered at the first
    probe are collected between probes.
    """

    name = "accelerator.nvidia"

    def __init__(self, period: float):
        self.period, self.timeout = period, 10.0
        self._nvml = None
        self._events = None
        self.xids: list[tuple[int, int]] = []  # (gpu index, xid) seen since the monitor started

    async def probe(self) -> Result:
        return await asyncio.to_thread(self._probe)

    def _init(self):
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        try:
            self._events = pynvml.nvmlEventSetCreate()
            for i in range(pynvml.nvmlDeviceGetCount()):
                pynvml.nvmlDeviceRegisterEvents(pynvml.nvmlDeviceGetHandleByIndex(i),
                                                pynvml.nvmlEventTypeXidCriticalError, self._events)
        except pynvml.NVMLError:
            self._events = None  # XID events unsupported here (e.g. inside some containers)

    def _drain_xids(self) -> None:
        nv = self._nvml
        while self._events is not None:
            try:
                data = nv.nvmlEventSetWait_v2(self._events, 0)
            except nv.NVMLError:
                return  # timeout: no more events
            index = nv.nvmlDeviceGetIndex(data.device) if data.device else -1
            self.xids.append((index, int(data.eventData)))

    def _probe(self) -> Result:
        if self._nvml is None:
            try:
                self._init()
            except ImportError:
                return Result.failed("nvidia-ml-py is not installed; the NVIDIA SKU image must include it")
            except Exception as exc:
                self._nvml = None
                return Result.failed(f"NVML unavailable ({exc}): driver not loaded or GPU lost")
        nv = self._nvml
        try:
            self._drain_xids()
            problems, values = [], {}
            for i in range(nv.nvmlDeviceGetCount()):
                h = nv.nvmlDeviceGetHandleByIndex(i)
                temp = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                util = nv.nvmlDeviceGetUtilizationRates(h)
                power = nv.nvmlDeviceGetPowerUsage(h) / 1000
                throttle = nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)
                try:
                    ecc = nv.nvmlDeviceGetTotalEccErrors(h, nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, nv.NVML_VOLATILE_ECC)
                except nv.NVMLError:
                    ecc = 0
                xids = [x for g, x in self.xids if g == i]
                values[f"gpu{i}"] = {"temp_c": temp, "power_w": round(power, 1), "util": util.gpu,
                                     "mem_used_ratio": round(mem.used / mem.total, 3), "ecc_uncorrected": ecc,
                                     "throttle_reasons": int(throttle), "xids": xids[-10:]}
                if ecc:
                    problems.append(f"gpu{i} has {ecc} uncorrected ECC errors: schedule a GPU replacement")
                if xids:
                    problems.append(f"gpu{i} reported XID {xids[-1]} ({len(xids)} critical XID events): "
                                    "collect diagnostics; the GPU may need a reset or replacement")
                if temp >= 87:
                    problems.append(f"gpu{i} at {temp} °C: check cooling")
                hw_slowdown = getattr(nv, "nvmlClocksThrottleReasonHwSlowdown", 0x8)
                if throttle & hw_slowdown:
                    problems.append(f"gpu{i} is in hardware slowdown (power or thermal)")
            return Result.degraded("; ".join(problems), **values) if problems else Result.ok("gpus normal", **values)
        except nv.NVMLError as exc:
            self._nvml = None
            try:
                nv.nvmlShutdown()
            except nv.NVMLError:
                pass
            return Result.failed(f"NVML error ({exc}): GPU lost or driver failed; the box needs service")


class DiskSpace(Check):
    name = "disk"

    def __init__(self, paths: dict[str, Path], period: float, degraded_ratio: float, failed_ratio: float,
                 degraded_bytes: int, failed_bytes: int):
        self.paths, self.period, self.timeout = paths, period, 10.0
        self.limits = (degraded_ratio, failed_ratio, degraded_bytes, failed_bytes)

    async def probe(self) -> Result:
        dr, fr, db, fb = self.limits
        worst, reasons, values = Status.OK, [], {}
        for label, path in self.paths.items():
            try:
                u = shutil.disk_usage(path)
            except OSError as exc:
                reasons.append(f"{label} {path}: cannot stat ({exc.strerror})")
                worst = Status.FAILED
                continue
            ratio = u.free / u.total if u.total else 0.0
            values[label] = {"free_bytes": u.free, "free_ratio": round(ratio, 4)}
            human = f"{u.free / 2**20:.0f} MiB free ({ratio:.0%}) on {path}"
            if ratio < fr or u.free < fb:
                worst = Status.FAILED
                reasons.append(f"{label}: only {human}; the box cannot record state: free space now")
            elif ratio < dr or u.free < db:
                worst = max(worst, Status.DEGRADED)
                reasons.append(f"{label}: {human}; free space soon (old logs, diagnostics bundles)")
        if worst == Status.OK:
            return Result.ok("enough free space", **values)
        return Result(worst, "; ".join(reasons), values)


class EngineIntegrity(Check):
    """Re-hash one store file per run, round robin, against its manifest (spreads the I/O over time)."""

    name = "store.integrity"

    def __init__(self, store: Path, manifests: list[Manifest], period: float):
        self.store, self.period, self.timeout = store, period, 120.0
        self.files = [(m.model_id, f) for m in manifests for f in m.files]
        self.cursor = 0
        self.bad: dict[str, str] = {}

    async def probe(self) -> Result:
        if not self.files:
            return Result.failed(f"no manifests found in {self.store}; reinstall the store")
        # after a fault, re-check the bad files first so recovery is seen quickly
        targets = [(mid, f) for mid, f in self.files if f"{mid}/{f.path}" in self.bad]
        mid, entry = targets[0] if targets else self.files[self.cursor % len(self.files)]
        if not targets:
            self.cursor += 1
        fault = await asyncio.to_thread(file_fault, self.store / mid, entry, mid)
        key = f"{mid}/{entry.path}"
        if fault:
            self.bad[key] = fault.replace(f"model {mid}: file {entry.path}", f"engine {mid}/{entry.path}")
        else:
            self.bad.pop(key, None)
        if self.bad:
            return Result.failed("; ".join(self.bad.values()), files=sorted(self.bad))
        return Result.ok(f"checked {key}", checked=key)


class ClockSanity(Check):
    """The wall clock is not before the store was built and does not jump against the monotonic clock."""

    name = "clock"

    def __init__(self, built_at: str | None, period: float):
        self.period, self.timeout = period, 5.0
        self.built = datetime.fromisoformat(built_at) if built_at else None
        self.last: tuple[float, float] | None = None

    async def probe(self) -> Result:
        wall, mono = time.time(), time.monotonic()
        now = datetime.fromtimestamp(wall, timezone.utc)
        problems = []
        if self.built and now < self.built:
            problems.append(f"clock says {now:%Y-%m-%d %H:%M} UTC, before the store was built ({self.built:%Y-%m-%d}): "
                            "set the time (NTP) or TLS and logs will be wrong")
        if self.last is not None:
            drift = (wall - self.last[0]) - (mono - self.last[1])
            if abs(drift) > 300:
                problems.append(f"wall clock jumped {drift:+.0f} s since the last check")
        self.last = (wall, mono)
        return Result.degraded("; ".join(problems)) if problems else Result.ok("clock sane", utc=now.isoformat())
