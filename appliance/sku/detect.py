"""This host's fingerprint, and which SKU profile it matches.

CPU flags come from /proc/cpuinfo, but cpuid can advertise what the kernel
or hypervisor will not run (AMX here: `ldtilecfg` faults). So the flags that
engines depend on are probed by executing one instruction in a throwaway
subprocess; a probe that dies with SIGILL marks the feature unusable.
"""

from __future__ import annotations

import ctypes  # noqa: F401  (used by the probe snippet)
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from packaging.version import InvalidVersion, Version

from appliance.sku.profiles import SkuProfile, known_profiles, load_profile

# One instruction each, then `ret`; run from an executable page in a subprocess.
_PROBES: dict[str, str] = {
    "avx512f": "62f17d48efc0c5f877c3",  # vpxord zmm0,zmm0,zmm0; vzeroupper; ret
    "avx512_vnni": "62f2754850c2c5f877c3",  # vpdpbusd zmm0,zmm1,zmm2; vzeroupper; ret
    "amx_tile": "c4e27849c0c3",  # tilerelease; ret
}

_PROBE_SNIPPET = """
import ctypes, mmap, sys
code = bytes.fromhex(sys.argv[1])
try:
    buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except OSError:
    sys.exit(3)
buf.write(code)
addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
ctypes.CFUNCTYPE(None)(addr)()
sys.exit(0)
"""


@dataclass
class GpuInfo:
    name: str
    compute_capability: str
    driver: str
    memory_gib: float


@dataclass
class Fingerprint:
    arch: str
    cpu_vendor: str
    cpu_model: str
    logical_cpus: int
    physical_cores: int
    cpu_flags: list[str]
    probed: dict[str, bool | None] = field(default_factory=dict)
    gpus: list[GpuInfo] = field(default_factory=list)
    tensorrt: str | None = None
    onnxruntime: str | None = None

    def usable_flags(self) -> set[str]:
        """Advertised flags minus those whose probe faulted."""
        return {f for f in self.cpu_flags if self.probed.get(f) is not False}

    def to_dict(self) -> dict:
        return asdict(self)


def _cpuinfo() -> tuple[str, str, list[str]]:
    vendor = model = ""
    flags: list[str] = []
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "vendor_id" and not vendor:
                    vendor = value.strip()
                elif key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = value.split()
    except OSError:
        pass
    return vendor, model or platform.processor(), sorted(set(flags))


def physical_cores() -> int:
    try:
        import psutil

        return psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except Exception:
        return os.cpu_count() or 1


def probe_instructions(advertised: set[str]) -> dict[str, bool | None]:
    """Run each probe whose flag cpuid advertises; None where probing is not allowed (e.g. W^X)."""
    if platform.machine() != "x86_64":
        return {}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _PROBE_SNIPPET, code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, code in _PROBES.items()
        if name in advertised
    }
    results: dict[str, bool | None] = {}
    for name, proc in procs.items():
        rc = proc.wait(timeout=30)
        results[name] = None if rc == 3 else rc == 0
    return results


def _gpus() -> list[GpuInfo]:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / 2**30
            out.append(GpuInfo(str(name), f"{major}.{minor}", str(driver), round(mem, 1)))
        return out
    finally:
        pynvml.nvmlShutdown()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def detect(probe: bool = True) -> Fingerprint:
    vendor, model, flags = _cpuinfo()
    return Fingerprint(
        arch=platform.machine(),
        cpu_vendor=vendor,
        cpu_model=model,
        logical_cpus=os.cpu_count() or 1,
        physical_cores=physical_cores(),
        cpu_flags=flags,
        probed=probe_instructions(set(flags)) if probe else {},
        gpus=_gpus(),
        tensorrt=_version("tensorrt"),
        onnxruntime=_version("onnxruntime"),
    )


def mismatches(profile: SkuProfile, fp: Fingerprint) -> list[str]:
    """Why this host cannot run engines built for ``profile``; empty when it can."""
    m = profile.match
    reasons: list[str] = []
    if m.arch and fp.arch != m.arch:
        reasons.append(f"architecture is {fp.arch}, the SKU needs {m.arch}")
    usable = fp.usable_flags()
    for flag in m.cpu_flags:
        if flag not in usable:
            why = "advertised but faults when executed" if flag in fp.cpu_flags else "not present"
            reasons.append(f"CPU flag {flag} {why}")
    if profile.accelerator == "nvidia":
        gpu = next((g for g in fp.gpus if m.gpu_name_contains and m.gpu_name_contains in g.name), None)
        if gpu is None:
            seen = ", ".join(g.name for g in fp.gpus) or "no NVIDIA GPU"
            reasons.append(f"needs a GPU named like {m.gpu_name_contains!r}, found {seen}")
        else:
            if m.compute_capability and gpu.compute_capability != m.compute_capability:
                reasons.append(f"compute capability {gpu.compute_capability}, the SKU needs {m.compute_capability}")
            if m.min_driver and _driver_version(gpu.driver) < _driver_version(m.min_driver):
                reasons.append(f"driver {gpu.driver} is older than {m.min_driver}")
    return reasons


def _driver_version(text: str) -> Version:
    """NVIDIA driver versions compare as versions ("1000.1" is newer than "550"), never as strings."""
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


def matching_profiles(fp: Fingerprint) -> list[str]:
    return [name for name in known_profiles() if not mismatches(load_profile(name), fp)]
