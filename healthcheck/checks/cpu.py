"""The CPU SKU's accelerator: memory pressure, temperature and load, via psutil."""

from __future__ import annotations

import os

import psutil

from appliance.health.status import Result
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
