import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.hardware import Hardware


def test_inventory_and_gpu_telemetry_or_why_there_is_none(box_settings):
    files = Hardware().collect(Context(box_settings, clock=lambda: 0.0))
    inv = json.loads(files["hardware.json"])
    assert inv["cpu"]["logical_cores"] >= 1 and inv["memory"]["total_gb"] > 0
    assert files["nvidia-smi.txt"].startswith("$ nvidia-smi")
