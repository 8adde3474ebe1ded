"""The NVIDIA SKU's GPUs via NVML: temperature, power, memory, ECC, XID errors, throttling."""

from __future__ import annotations

import asyncio

from appliance.health.status import Result
from healthcheck.checks.base import Check


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
