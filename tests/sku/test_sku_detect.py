"""SKU detection: this CI host is the CPU SKU; probes override cpuid; a GPU SKU names what is missing."""

import json
import subprocess
import sys

from appliance.sku.detect import Fingerprint, GpuInfo, detect, matching_profiles, mismatches
from appliance.sku.profiles import known_profiles, load_profile
from conftest import needs_avx512


def test_profiles_are_data_and_load():
    assert known_profiles() == ["cpu-x86_64-avx2", "cpu-x86_64-avx512", "nvidia-h100-80gb"]
    cpu, gpu = load_profile("cpu-x86_64-avx512"), load_profile("nvidia-h100-80gb")
    assert cpu.backend == "cpu-ort" and "int4" in cpu.precisions["chat"]
    assert gpu.match.compute_capability == "9.0" and gpu.backend == "tensorrt"


@needs_avx512
def test_this_host_matches_the_cpu_sku_by_probing():
    fp = detect()
    assert fp.probed.get("avx512f") is True, "AVX-512 must be probed by executing an instruction"
    assert matching_profiles(fp) == ["cpu-x86_64-avx2", "cpu-x86_64-avx512"], "AVX-512 hosts run AVX2 engines too"


def _fp(**kw) -> Fingerprint:
    base = dict(arch="x86_64", cpu_vendor="x", cpu_model="y", logical_cpus=2, physical_cores=2,
                cpu_flags=["avx512f", "avx512bw", "avx512vl", "avx512_vnni", "amx_tile"])
    base.update(kw)
    return Fingerprint(**base)


def test_an_avx2_host_matches_only_the_avx2_sku():
    fp = _fp(cpu_flags=["avx", "avx2", "fma"])
    assert matching_profiles(fp) == ["cpu-x86_64-avx2"]
    assert mismatches(load_profile("cpu-x86_64-avx512"), fp)[0] == "CPU flag avx512f not present"


def test_advertised_but_faulting_flag_is_not_trusted():
    fp = _fp(probed={"avx512_vnni": False})
    reasons = mismatches(load_profile("cpu-x86_64-avx512"), fp)
    assert reasons == ["CPU flag avx512_vnni advertised but faults when executed"]


def test_gpu_sku_reasons():
    prof = load_profile("nvidia-h100-80gb")
    assert "no NVIDIA GPU" in mismatches(prof, _fp())[0]
    a100 = _fp(gpus=[GpuInfo("NVIDIA A100-SXM4-80GB", "8.0", "550.54", 80.0)])
    assert "H100" in mismatches(prof, a100)[0]
    h100 = _fp(gpus=[GpuInfo("NVIDIA H100 80GB HBM3", "9.0", "550.54", 80.0)])
    assert mismatches(prof, h100) == []


@needs_avx512
def test_cli_prints_fingerprint_and_match():
    out = subprocess.run([sys.executable, "-m", "appliance", "sku", "detect", "--json"], capture_output=True,
                         text=True, check=True).stdout
    data = json.loads(out)
    assert data["matches"] == ["cpu-x86_64-avx2", "cpu-x86_64-avx512"]
    assert data["fingerprint"]["arch"] == "x86_64"
    assert "nvidia-h100-80gb" in data["mismatches"]


def test_driver_versions_compare_as_versions():
    """'1000.1' is newer than '550' (as strings it would sort before it)."""
    from appliance.sku.detect import Fingerprint, GpuInfo, mismatches
    from appliance.sku.profiles import load_profile

    profile = load_profile("nvidia-h100-80gb")
    gpu = profile.match.gpu_name_contains

    def reasons(driver: str) -> list[str]:
        fp = Fingerprint(arch="x86_64", cpu_vendor="x", cpu_model="x", logical_cpus=2, physical_cores=2, cpu_flags=[],
                         gpus=[GpuInfo(f"NVIDIA {gpu}", "9.0", driver, 80.0)])
        return [r for r in mismatches(profile, fp) if "driver" in r]

    assert reasons("1000.1") == [] and reasons("550.54") == []
    assert reasons("535.104") == ["driver 535.104 is older than 550"]
