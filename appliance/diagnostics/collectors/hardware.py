"""Hardware inventory and accelerator telemetry: CPU, memory, disks, temperatures, GPUs."""

from __future__ import annotations

import psutil

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json, run_command
from appliance.sku.detect import detect

_NVIDIA_QUERY = ("name,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu,power.draw,"
                 "clocks.sm,ecc.errors.uncorrected.volatile.total,pstate")


class Hardware(Collector):
    name = "hardware"
    gathers = "CPU model, cores and flags, memory, disks (sizes and use), sensors, NVIDIA GPU telemetry"

    def collect(self, ctx: Context) -> Files:
        fp = detect(probe=False)
        mem = psutil.virtual_memory()
        disks = []
        for part in psutil.disk_partitions(all=False):
            try:
                use = psutil.disk_usage(part.mountpoint)
            except OSError:
                continue
            disks.append({"mount": part.mountpoint, "fstype": part.fstype, "total_gb": round(use.total / 1e9, 1),
                          "used_ratio": round(use.percent / 100, 3)})
        temps: dict[str, float] = {}
        try:
            for chip, sensors in (psutil.sensors_temperatures() or {}).items():
                for s in sensors:
                    if s.current:
                        temps[f"{chip}/{s.label or 'temp'}"] = s.current
        except (AttributeError, OSError):
            pass
        inventory = {
            "cpu": {"model": fp.cpu_model, "vendor": fp.cpu_vendor, "physical_cores": fp.physical_cores,
                    "logical_cores": fp.logical_cpus, "load_avg": psutil.getloadavg(),
                    "flags_of_interest": sorted(f for f in fp.cpu_flags if f.startswith(("avx", "amx", "fma")))},
            "memory": {"total_gb": round(mem.total / 1e9, 2), "used_ratio": round(mem.percent / 100, 3)},
            "disks": disks,
            "temperatures_c": temps,
            "gpus": fp.to_dict()["gpus"],
        }
        nvidia = run_command("nvidia-smi", f"--query-gpu={_NVIDIA_QUERY}", "--format=csv", timeout=10)
        return {"hardware.json": as_json(inventory), "nvidia-smi.txt": nvidia.as_text()}
