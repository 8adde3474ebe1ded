"""A box's state without a built store: a minimal store folder (index and one manifest, no weights) and a vendor key pair."""

from __future__ import annotations

import hashlib
import json

import pytest

from appliance.diagnostics.encryption import keygen
from appliance.settings import Settings

WEIGHTS_SHA = hashlib.sha256(b"weights").hexdigest()


def minimal_store(root):
    """index.json and one manifest.json with a sha256 per file; the weights themselves are a stub."""
    model = root / "tiny-chat"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"weights")
    manifest = {"model_id": "tiny-chat", "task": "chat", "sku": "cpu-x86_64-avx512",
                "fingerprint": {"cpu_model": "Some CPU", "gpus": []},
                "files": [{"path": "model.onnx", "sha256": WEIGHTS_SHA, "size": 7}],
                "golden": {"prompt": "The capital of France is"}}
    raw = json.dumps(manifest, indent=2).encode()
    (model / "manifest.json").write_bytes(raw)
    (root / "index.json").write_text(json.dumps({"box": "test-box", "sku": "cpu-x86_64-avx512", "models": [
        {"id": "tiny-chat", "task": "chat", "manifest_sha256": hashlib.sha256(raw).hexdigest()}]}))
    return root


@pytest.fixture()
def vendor(tmp_path):
    key, pub = keygen(tmp_path / "vendor" / "diag")
    return key, pub


@pytest.fixture()
def settings(tmp_path, vendor):
    return Settings(state_dir=tmp_path / "state", store=minimal_store(tmp_path / "store"), vendor_key=vendor[1],
                    tls="off")
