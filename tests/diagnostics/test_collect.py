"""A collector that fails or hangs is recorded in the bundle; the others still run."""

import threading

from appliance.diagnostics.bundle import CollectorOutcome
from appliance.diagnostics.collect import collect
from appliance.diagnostics.collectors.base import Collector
from appliance.diagnostics.review import list_bundles, read_file


class Fine(Collector):
    name, gathers = "fine", "a line"

    def collect(self, ctx):
        return {"fine.txt": "all good from 192.168.1.9\n"}


class Broken(Collector):
    name, gathers = "broken", "nothing"

    def collect(self, ctx):
        raise RuntimeError("lsblk vanished")


class Hung(Collector):
    name, gathers, timeout = "hung", "nothing, ever", 0.2

    def __init__(self):
        self.release = threading.Event()

    def collect(self, ctx):
        self.release.wait(30)
        return {"late.txt": "too late"}


def test_failed_and_timed_out_collectors_are_recorded_and_the_rest_run(box_settings):
    hung = Hung()
    try:
        index, root = collect(box_settings, [Broken(), hung, Fine()], clock=lambda: 1.7e9)
    finally:
        hung.release.set()
    outcome = {c.name: c for c in index.collectors}
    assert outcome["broken"].outcome is CollectorOutcome.FAILED and "lsblk vanished" in outcome["broken"].error
    assert outcome["hung"].outcome is CollectorOutcome.TIMED_OUT and "0.2 s" in outcome["hung"].error
    assert outcome["fine"].outcome is CollectorOutcome.OK
    assert [f.path for f in index.files] == ["fine/fine.txt"]
    assert index.created_at.startswith("2023-11-14")
    assert read_file(box_settings, index.id, "fine/fine.txt") == "all good from [ip-1]\n"
    assert [b.id for b, _ in list_bundles(box_settings)] == [index.id]
