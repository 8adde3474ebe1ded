"""The host's SKU fingerprint against the profile the store was built for and each manifest's build host."""

from __future__ import annotations

import json

from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json
from appliance.sku.detect import detect, matching_profiles, mismatches
from appliance.sku.profiles import load_profile
from appliance.store.manifest import INDEX_FILE, MANIFEST_FILE


class SkuFingerprint(Collector):
    name = "sku_fingerprint"
    gathers = "this host's SKU fingerprint, the profiles it matches, and how it differs from the store's SKU"

    def collect(self, ctx: Context) -> Files:
        fp = detect(probe=True)
        report: dict = {"host": fp.to_dict(), "matching_profiles": matching_profiles(fp)}
        index_path = ctx.settings.store / INDEX_FILE
        if not index_path.is_file():
            report["store"] = f"no store index at {index_path}"
            return {"sku.json": as_json(report)}
        index = json.loads(index_path.read_text())
        sku = index.get("sku")
        report["store_sku"] = sku
        report["host_mismatches"] = mismatches(load_profile(sku), fp)
        builds = {}
        for entry in index.get("models", []):
            manifest = ctx.settings.store / entry["id"] / MANIFEST_FILE
            if manifest.is_file():
                built_on = json.loads(manifest.read_text()).get("fingerprint", {})
                builds[entry["id"]] = {"built_on_cpu": built_on.get("cpu_model"),
                                       "built_on_gpus": [g.get("name") for g in built_on.get("gpus", [])],
                                       "same_cpu_model": built_on.get("cpu_model") == fp.cpu_model}
        report["manifests"] = builds
        return {"sku.json": as_json(report)}
