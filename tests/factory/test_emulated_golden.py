import pytest

from appliance.errors import ApplianceError
from appliance.factory import emulated_golden
from appliance.sku.profiles import load_profile

AVX2 = load_profile("cpu-x86_64-avx2")
AVX512 = load_profile("cpu-x86_64-avx512")


def _host(*flags, probed=None):
    return {"cpu_flags": list(flags), "probed": probed or {}}


def test_an_avx512_host_records_the_avx2_golden_on_an_emulated_cpu():
    assert emulated_golden.needed(AVX2, _host("avx2", "fma", "avx512f"))
    assert emulated_golden.describe(AVX2) == "qemu-x86_64 -cpu max,+avx,+avx2,+fma,+f16c"


def test_a_host_of_the_skus_own_kind_records_it_natively():
    assert not emulated_golden.needed(AVX2, _host("avx2", "fma"))
    assert not emulated_golden.needed(AVX512, _host("avx2", "fma", "avx512f"))


def test_a_flag_whose_probe_faulted_does_not_count():
    assert not emulated_golden.needed(AVX2, _host("avx2", "fma", "amx_tile", probed={"amx_tile": False}))


def test_without_the_emulator_the_error_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(emulated_golden.shutil, "which", lambda _: None)
    with pytest.raises(ApplianceError, match="apt-get install qemu-user"):
        emulated_golden.golden_tokens(AVX2, tmp_path, None, [1, 2], 4, 16)
