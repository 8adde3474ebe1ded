"""One collector's output, redacted, right now: what the vendor's support routes answer with."""

from __future__ import annotations

import time

from appliance.diagnostics import known_secrets
from appliance.diagnostics.collectors.base import Collector, Context, Files
from appliance.diagnostics.redaction import Redactor
from appliance.settings import BoxSettings


def gather(settings: BoxSettings, collector: Collector) -> Files:
    redactor = known_secrets.seed(Redactor(), settings)
    files = collector.collect(Context(settings=settings, clock=time.time))
    return {name: redactor.redact(text) for name, text in files.items()}


def redact(settings: BoxSettings, text: str) -> str:
    return known_secrets.seed(Redactor(), settings).redact(text)
