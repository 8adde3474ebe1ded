"""The store on disk still matches its manifests, one file re-hashed per run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.health.status import Result
from appliance.store.manifest import Manifest
from appliance.store.verify import file_fault
from healthcheck.checks.base import Check


class EngineIntegrity(Check):
    """Re-hash one store file per run, round robin, against its manifest (spreads the I/O over time)."""

    name = "store.integrity"

    def __init__(self, store: Path, manifests: list[Manifest], period: float):
        self.store, self.period, self.timeout = store, period, 120.0
        self.files = [(m.model_id, f) for m in manifests for f in m.files]
        self.cursor = 0
        self.bad: dict[str, str] = {}

    async def probe(self) -> Result:
        if not self.files:
            return Result.failed(f"no manifests found in {self.store}; reinstall the store")
        # after a fault, re-check the bad files first so recovery is seen quickly
        targets = [(mid, f) for mid, f in self.files if f"{mid}/{f.path}" in self.bad]
        mid, entry = targets[0] if targets else self.files[self.cursor % len(self.files)]
        if not targets:
            self.cursor += 1
        fault = await asyncio.to_thread(file_fault, self.store / mid, entry, mid)
        key = f"{mid}/{entry.path}"
        if fault:
            self.bad[key] = fault.replace(f"model {mid}: file {entry.path}", f"engine {mid}/{entry.path}")
        else:
            self.bad.pop(key, None)
        if self.bad:
            return Result.failed("; ".join(self.bad.values()), files=sorted(self.bad))
        return Result.ok(f"checked {key}", checked=key)



class StoreUnreadable(Check):
    """Stands in for EngineIntegrity when the store cannot be read at all: failed, with the reason, every run."""

    name = "store.integrity"

    def __init__(self, reason: str):
        self.reason, self.period, self.timeout = reason, 300.0, 5.0

    async def probe(self) -> Result:
        return Result.failed(self.reason)
