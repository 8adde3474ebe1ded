"""Versions: the appliance, Python, and every installed distribution."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

from appliance import __version__
from appliance.diagnostics.collectors.base import Collector, Context, Files, as_json


class Packages(Collector):
    name = "packages"
    gathers = "appliance version, Python version, name and version of every installed Python distribution"

    def collect(self, ctx: Context) -> Files:
        dists = sorted({(d.metadata["Name"] or "?", d.version) for d in importlib.metadata.distributions()},
                       key=lambda d: d[0].lower())
        return {"versions.json": as_json({"appliance": __version__, "python": platform.python_version(),
                                          "executable_prefix": sys.prefix,
                                          "distributions": {name: version for name, version in dists}})}
