"""The model store's index and every manifest, and whether the signature and layout verify; never weights."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json
from appliance.errors import ApplianceError
from appliance.store.manifest import INDEX_FILE, MANIFEST_FILE, SIGNATURE_FILE
from appliance.store.verify import verify_store


class StoreManifests(Collector):
    name = "store_manifests"
    gathers = "store index.json, each model's manifest.json, signature check (weights are never copied)"

    def collect(self, ctx: Context) -> Files:
        root = ctx.settings.store
        files: Files = {}
        index = root / INDEX_FILE
        if not index.is_file():
            return {"store.json": as_json({"store": str(root), "present": False,
                                           "note": f"no store index at {index}"})}
        files["index.json"] = index.read_text()
        for manifest in sorted(root.glob(f"*/{MANIFEST_FILE}")):
            files[f"{manifest.parent.name}/{MANIFEST_FILE}"] = manifest.read_text()
        try:
            verified = verify_store(root, ctx.settings.trusted_key, host=None, check_hashes=False)
            verdict = {"verified": True, "models": sorted(verified.models)}
        except ApplianceError as exc:
            verdict = {"verified": False, "fault": str(exc)}
        sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
        files["store.json"] = as_json({"store": str(root), "present": True, "signature_file": (root / SIGNATURE_FILE)
                                       .is_file(), "check": verdict, "file_sizes": sizes,
                                       "note": "weights are listed by size only; sha256 checks run on the box"})
        return files
