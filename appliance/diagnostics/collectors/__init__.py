"""The collectors, one per file; ``ALL`` is the order they run and appear in a bundle."""

from __future__ import annotations

from appliance.diagnostics.collectors.base import Collector
from appliance.diagnostics.collectors.box_config import BoxConfig
from appliance.diagnostics.collectors.hardware import Hardware
from appliance.diagnostics.collectors.health_record import HealthRecord
from appliance.diagnostics.collectors.os_kernel import OsKernel
from appliance.diagnostics.collectors.packages import Packages
from appliance.diagnostics.collectors.self_tests import SelfTests
from appliance.diagnostics.collectors.services import Services
from appliance.diagnostics.collectors.sku_fingerprint import SkuFingerprint
from appliance.diagnostics.collectors.store_manifests import StoreManifests
from appliance.diagnostics.collectors.update_slots import UpdateSlots


def all_collectors() -> list[Collector]:
    return [HealthRecord(), SelfTests(), OsKernel(), Hardware(), SkuFingerprint(), StoreManifests(), Services(),
            BoxConfig(), Packages(), UpdateSlots()]
