import json

from appliance import __version__
from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.packages import Packages


def test_versions(box_settings):
    data = json.loads(Packages().collect(Context(box_settings, clock=lambda: 0.0))["versions.json"])
    assert data["appliance"] == __version__ and "pyrage" in data["distributions"]
