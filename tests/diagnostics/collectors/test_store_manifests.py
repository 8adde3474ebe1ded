import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.store_manifests import StoreManifests


def test_manifests_and_sizes_but_never_weights(box_settings):
    files = StoreManifests().collect(Context(box_settings, clock=lambda: 0.0))
    assert set(files) == {"index.json", "tiny-chat/manifest.json", "store.json"}
    store = json.loads(files["store.json"])
    assert store["file_sizes"]["tiny-chat/model.onnx"] == 7
    assert store["check"]["verified"] is False and "index.sig" in store["check"]["fault"]
    assert all("weights" != text for text in files.values())
