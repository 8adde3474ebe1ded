"""`store verify` and the box's own check: every kind of tamper is caught and named."""

import json
import subprocess
import sys

import pytest

from appliance.errors import StoreError
from appliance.sku.detect import Fingerprint, detect
from appliance.store.signing import write_keypair
from appliance.store.verify import verify_store
from conftest import needs_avx512

CHAT = "smollm2-135m-instruct"


def _verify_cli(store, *extra):
    return subprocess.run([sys.executable, "-m", "appliance", "store", "verify", str(store), *extra],
                          capture_output=True, text=True)


@needs_avx512
def test_intact_store_verifies(default_store):
    result = verify_store(default_store, host=detect())
    assert set(result.models) == {CHAT, "all-minilm-l6-v2", "tiny-sd-seeded"}
    proc = _verify_cli(default_store)
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout


def _flip_byte(path, offset=4096):
    data = bytearray(path.read_bytes())
    data[min(offset, len(data) - 1)] ^= 0x01
    path.write_bytes(bytes(data))


@needs_avx512  # `store verify` checks the host's SKU before the files
def test_changed_byte_is_named(store_copy):
    _flip_byte(store_copy / CHAT / "model.onnx.data")
    proc = _verify_cli(store_copy)
    assert proc.returncode != 0
    assert f"model {CHAT}: file model.onnx.data changed on disk since build" in proc.stderr
    assert proc.stderr.count("\n") <= 2


def test_missing_file_is_named(store_copy):
    (store_copy / CHAT / "tokenizer.json").unlink()
    with pytest.raises(StoreError, match=f"model {CHAT}: file tokenizer.json is missing"):
        verify_store(store_copy)


def test_unlisted_file_is_refused(store_copy):
    (store_copy / CHAT / "extra.onnx").write_bytes(b"x")
    with pytest.raises(StoreError, match="unexpected file extra.onnx"):
        verify_store(store_copy)


def test_edited_manifest_is_caught(store_copy):
    path = store_copy / CHAT / "manifest.json"
    data = json.loads(path.read_text())
    data["parity"][1]["token_agreement"] = 1.0
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match=f"model {CHAT}: manifest.json changed since signing"):
        verify_store(store_copy)


def test_wrong_signature_is_refused(store_copy, tmp_path):
    other = tmp_path / "other.pub"
    write_keypair(tmp_path / "other.key", other)
    proc = _verify_cli(store_copy, "--trusted-key", str(other))
    assert proc.returncode != 0
    assert "signature does not match index.json" in proc.stderr
    idx = store_copy / "index.json"
    idx.write_text(idx.read_text().replace('"appliance-dev"', '"evil-box"'))
    with pytest.raises(StoreError, match="signature does not match"):
        verify_store(store_copy)
    (store_copy / "index.sig").unlink()
    with pytest.raises(StoreError, match="index.sig: missing"):
        verify_store(store_copy)


@needs_avx512  # the faulting-VNNI case starts from this host's own fingerprint
def test_foreign_sku_is_refused(default_store):
    host = detect()
    arm = Fingerprint(arch="aarch64", cpu_vendor="ARM", cpu_model="Neoverse", logical_cpus=4, physical_cores=4,
                      cpu_flags=["asimd"], probed={})
    with pytest.raises(StoreError, match="built for SKU cpu-x86_64-avx512.*architecture is aarch64"):
        verify_store(default_store, host=arm)
    no_vnni = Fingerprint(**{**host.to_dict(), "gpus": [], "probed": {**host.probed, "avx512_vnni": False}})
    with pytest.raises(StoreError, match="avx512_vnni advertised but faults"):
        verify_store(default_store, host=no_vnni)


def test_not_a_store(tmp_path):
    proc = _verify_cli(tmp_path / "nothing")
    assert proc.returncode != 0 and "no model store here" in proc.stderr
