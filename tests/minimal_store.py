"""A model store without a build: index.json and one manifest.json, weights a stub; for tests that read manifests only."""

from __future__ import annotations

import hashlib
import json

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
