import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.sku_fingerprint import SkuFingerprint


def test_host_against_the_store_sku_and_each_manifest(box_settings):
    data = json.loads(SkuFingerprint().collect(Context(box_settings, clock=lambda: 0.0))["sku.json"])
    assert data["store_sku"] == "cpu-x86_64-avx512" and isinstance(data["host_mismatches"], list)
    assert data["manifests"]["tiny-chat"]["built_on_cpu"] == "Some CPU"


def test_no_store_is_said_plainly(box_settings, tmp_path):
    box_settings = box_settings.model_copy(update={"store": tmp_path / "none"})
    data = json.loads(SkuFingerprint().collect(Context(box_settings, clock=lambda: 0.0))["sku.json"])
    assert data["store"].startswith("no store index")
