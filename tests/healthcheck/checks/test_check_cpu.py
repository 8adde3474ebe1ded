"""The CPU check on this host: load and memory, degraded with an actionable reason when memory is tight."""

import asyncio

from appliance.health.status import Status
from healthcheck.checks.cpu import CpuAccelerator


def test_cpu_check_reports_load_and_memory():
    r = asyncio.run(CpuAccelerator(30, memory_degraded_ratio=0.99).probe())
    assert r.status == Status.OK and r.values["cores"] >= 1 and 0 < r.values["memory_used_ratio"] < 1
    tight = asyncio.run(CpuAccelerator(30, memory_degraded_ratio=0.0).probe())
    assert tight.status == Status.DEGRADED and "memory" in tight.reason and "lower max_batch" in tight.reason
