"""Run the collectors, redact what they return, and stage the bundle on the box for the admin's review.

Each collector runs in its own daemon thread with its time limit: one that
raises or hangs is recorded in the index and the others still run (a hung
thread is abandoned, never waited for at exit).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from appliance import __version__
from appliance.diagnostics import known_secrets
from appliance.diagnostics.bundle import (FILES_DIR, INDEX_FILE, BundleFile, BundleIndex, CollectorOutcome,
                                          CollectorRecord, RedactionReport)
from appliance.diagnostics.collectors import all_collectors
from appliance.diagnostics.collectors.base import Collector, Context, Files
from appliance.diagnostics.redaction import Redactor
from appliance.settings import BoxSettings

MAPS_DIR = "redaction-maps"
STAGED_DIR = "staged"


@dataclass
class _Run:
    files: Files | None = None
    error: BaseException | None = None


def _run_one(collector: Collector, ctx: Context) -> tuple[CollectorOutcome, Files, str | None, float]:
    result = _Run()

    def target() -> None:
        try:
            result.files = collector.collect(ctx)
        except BaseException as exc:  # a collector bug is a line in the bundle, not a failed collection
            result.error = exc

    start = time.monotonic()
    thread = threading.Thread(target=target, name=f"collector-{collector.name}", daemon=True)
    thread.start()
    thread.join(collector.timeout)
    seconds = round(time.monotonic() - start, 3)
    if thread.is_alive():
        return CollectorOutcome.TIMED_OUT, {}, f"no result within {collector.timeout:g} s; abandoned", seconds
    if result.error is not None:
        return CollectorOutcome.FAILED, {}, f"{type(result.error).__name__}: {result.error}", seconds
    return CollectorOutcome.OK, dict(result.files or {}), None, seconds


def new_bundle_id(now: float) -> str:
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"diag-{stamp}-{hashlib.sha256(str(time.monotonic_ns()).encode()).hexdigest()[:6]}"


def staged_dir(settings: BoxSettings, bundle_id: str) -> Path:
    return settings.diagnostics_dir / STAGED_DIR / bundle_id


def map_path(settings: BoxSettings, bundle_id: str) -> Path:
    return settings.diagnostics_dir / MAPS_DIR / f"{bundle_id}.json"


def collect(settings: BoxSettings, collectors: list[Collector] | None = None, clock: Callable[[], float] = time.time,
            progress: Callable[[Collector, CollectorRecord | None], None] | None = None,
            redactor: Redactor | None = None) -> tuple[BundleIndex, Path]:
    """Collect, redact and stage one bundle; returns its index and the staged folder."""
    settings.ensure_state_dir()
    collectors = all_collectors() if collectors is None else collectors
    ctx = Context(settings=settings, clock=clock)
    redactor = known_secrets.seed(redactor or Redactor(), settings)
    started, now = time.monotonic(), clock()
    bundle_id = new_bundle_id(now)
    root = staged_dir(settings, bundle_id)
    (root / FILES_DIR).mkdir(parents=True, mode=0o700)
    records, entries = [], []
    for collector in collectors:
        if progress:
            progress(collector, None)
        outcome, files, error, seconds = _run_one(collector, ctx)
        written = []
        for name, text in files.items():
            rel = f"{collector.name}/{Path(name).as_posix().lstrip('/')}"
            data = redactor.redact(text).encode()
            path = root / FILES_DIR / rel
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.write_bytes(data)
            entries.append(BundleFile(path=rel, collector=collector.name, size=len(data),
                                      sha256=hashlib.sha256(data).hexdigest()))
            written.append(rel)
        record = CollectorRecord(name=collector.name, gathers=collector.gathers, outcome=outcome, seconds=seconds,
                                 error=redactor.redact(error) if error else None, files=written)
        records.append(record)
        if progress:
            progress(collector, record)
    distinct: dict[str, int] = {}
    for category, _ in redactor.mapping:
        distinct[category.value] = distinct.get(category.value, 0) + 1
    index = BundleIndex(
        id=bundle_id, created_at=datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        box=redactor.redact(getattr(settings, "box_name", None) or _store_box(settings) or "appliance"),
        appliance_version=__version__, collect_seconds=round(time.monotonic() - started, 3),
        collectors=records, files=entries,
        redaction=RedactionReport(replaced=dict(redactor.counts), distinct=distinct))
    (root / INDEX_FILE).write_text(index.model_dump_json(indent=2))
    redactor.write_mapping(map_path(settings, bundle_id))
    return index, root


def _store_box(settings: BoxSettings) -> str | None:
    try:
        return json.loads((settings.store / "index.json").read_text()).get("box")
    except (OSError, ValueError):
        return None

