"""Store integrity: files re-hashed round robin; a changed file fails naming it, and recovery is seen at once."""

from __future__ import annotations

import asyncio
import hashlib
import types

from appliance.health.status import Status
from appliance.store.manifest import FileEntry
from healthcheck.checks.integrity import EngineIntegrity, StoreUnreadable


def _store(tmp_path):
    (tmp_path / "m").mkdir()
    entries = []
    for name, data in (("model.onnx", b"graph"), ("tokenizer.json", b"{}")):
        (tmp_path / "m" / name).write_bytes(data)
        entries.append(FileEntry(path=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data)))
    return types.SimpleNamespace(model_id="m", files=entries)


def test_round_robin_then_fault_then_recovery(tmp_path):
    check = EngineIntegrity(tmp_path, [_store(tmp_path)], period=60)
    checked = {asyncio.run(check.probe()).values["checked"] for _ in range(2)}
    assert checked == {"m/model.onnx", "m/tokenizer.json"}
    (tmp_path / "m" / "model.onnx").write_bytes(b"grapH")
    results = [asyncio.run(check.probe()) for _ in range(2)]
    bad = next(r for r in results if r.status == Status.FAILED)
    assert "m/model.onnx" in bad.reason and bad.values["files"] == ["m/model.onnx"]
    (tmp_path / "m" / "model.onnx").write_bytes(b"graph")
    assert asyncio.run(check.probe()).status == Status.OK  # the bad file is re-checked first


def test_no_manifests_and_unreadable_store_fail(tmp_path):
    assert asyncio.run(EngineIntegrity(tmp_path, [], 60).probe()).status == Status.FAILED
    r = asyncio.run(StoreUnreadable("index.sig does not verify").probe())
    assert r.status == Status.FAILED and r.reason == "index.sig does not verify"
