"""Phone-home: when the admin turns it on, a short redacted health summary to the vendor's URL on a schedule.

Off by default. The summary says how the box is (state, failing checks,
restarts, versions, SKU) and passes every string through the same redaction
as a bundle, so keys, addresses, host and user names and prompt text never
leave. Delivery retries a 5xx or a connection failure with exponential
back-off, a bounded number of times, and never a 4xx (the vendor refused
this summary; the same bytes again would be refused again). There is one
slot, not a queue: a newer summary replaces one not yet delivered. The last
attempt's outcome is written to the state directory for the console and
``appliance health``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal

import httpx
from pydantic import BaseModel, ValidationError

from appliance import __version__
from appliance.diagnostics import known_secrets
from appliance.diagnostics.redaction import Redactor
from appliance.health.history import snapshot
from appliance.settings import BoxSettings
from appliance.store.manifest import INDEX_FILE

SCHEMA = "appliance.phone-home/1"
MAX_REASON = 300
ATTEMPTS = 4
FIRST_DELAY_S = 30.0
MAX_DELAY_S = 600.0
TIMEOUT_S = 15.0


class CheckState(BaseModel):
    name: str
    status: str
    reason: str
    since: str | None = None


class Restarts(BaseModel):
    count: int
    last_at: str | None = None
    last_reason: str | None = None


class Versions(BaseModel):
    appliance: str
    store_built_at: str | None = None
    models: list[str] = []


class Summary(BaseModel):
    """What the vendor receives: enough to see that a box needs help, nothing about who uses it or for what."""

    kind: Literal["appliance.phone-home/1"] = SCHEMA
    box_id: str
    at: str
    sku: str | None
    versions: Versions
    state: CheckState
    failing_checks: list[CheckState]
    restarts: Restarts

    def body(self) -> bytes:
        return self.model_dump_json().encode()


Outcome = Literal["delivered", "refused", "failed"]


class Attempt(BaseModel):
    """The last delivery's outcome, for the admin: when, what the vendor answered, whether a summary waits."""

    at: float
    outcome: Outcome
    status: int | None = None
    attempts: int
    detail: str
    pending: bool

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.at).strftime("%Y-%m-%d %H:%M:%S")
        answer = f"HTTP {self.status}" if self.status else self.detail
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"{self.outcome} at {when} ({answer}{tries})" + ("; a summary waits for the next try" if self.pending
                                                                else "")


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def box_id(settings: BoxSettings) -> str:
    path = settings.box_id_file
    try:
        return str(uuid.UUID(path.read_text().strip()))
    except (OSError, ValueError):
        settings.ensure_state_dir()
        value = str(uuid.uuid4())
        path.write_text(value + "\n")
        return value


def _store(settings: BoxSettings) -> dict[str, Any]:
    """The store's index as far as it reads: a summary from a box with a damaged store is when it matters most."""
    try:
        index = json.loads((settings.store / INDEX_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return index if isinstance(index, dict) else {}


def _redacted(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, dict):
        return {k: _redacted(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v, redactor) for v in value]
    return value


def build_summary(settings: BoxSettings, clock: Callable[[], float] = time.time) -> Summary:
    """The summary as of now, every string through the bundle's redaction (rules and the box's known secrets)."""
    snap = snapshot(settings.health_db, 1)
    index = _store(settings)
    box, last = snap["box"], snap["restarts"]["last"]
    summary = Summary(
        box_id=box_id(settings), at=_iso(clock()) or "", sku=index.get("sku"),
        versions=Versions(appliance=__version__, store_built_at=index.get("built_at"),
                          models=[str(m.get("id")) for m in index.get("models", []) if isinstance(m, dict)]),
        state=CheckState(name="box", status=box["status"], reason=box["reason"][:MAX_REASON],
                         since=_iso(box.get("since"))),
        failing_checks=[CheckState(name=c["name"], status=c["status"], reason=c["reason"][:MAX_REASON],
                                   since=_iso(c["since"])) for c in snap["checks"] if c["status"] != "ok"],
        restarts=Restarts(count=snap["restarts"]["count"], last_at=_iso(last["at"]) if last else None,
                          last_reason=last["reason"][:MAX_REASON] if last else None))
    redactor = known_secrets.seed(Redactor(), settings)
    return Summary.model_validate(_redacted(summary.model_dump(), redactor))


def read_attempt(settings: BoxSettings) -> Attempt | None:
    try:
        return Attempt.model_validate_json(settings.phone_home_file.read_text())
    except (OSError, ValidationError):
        return None


def _write_attempt(settings: BoxSettings, attempt: Attempt) -> None:
    tmp = settings.phone_home_file.with_suffix(".tmp")
    tmp.write_text(attempt.model_dump_json())
    os.replace(tmp, settings.phone_home_file)


class PhoneHome:
    """Builds and delivers summaries for the monitor; the clock, the sleep and the transport are injected in tests."""

    def __init__(self, settings: BoxSettings, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 transport: httpx.AsyncBaseTransport | None = None, attempts: int = ATTEMPTS,
                 first_delay: float = FIRST_DELAY_S, max_delay: float = MAX_DELAY_S):
        self.s, self.clock, self.sleep, self.transport = settings, clock, sleep, transport
        self.attempts, self.first_delay, self.max_delay = attempts, first_delay, max_delay
        self.pending: Summary | None = None

    async def tick(self) -> Attempt | None:
        """One scheduled run: nothing when off; else a fresh summary (replacing an undelivered one), delivered."""
        if not self.s.phone_home or not self.s.phone_home_url:
            self.pending = None
            return None
        self.pending = await asyncio.to_thread(build_summary, self.s, self.clock)
        attempt = await self._deliver(self.s.phone_home_url, self.pending)
        await asyncio.to_thread(_write_attempt, self.s, attempt)
        return attempt

    async def _deliver(self, url: str, summary: Summary) -> Attempt:
        delay = self.first_delay
        headers = {"Content-Type": "application/json", "User-Agent": f"appliance/{__version__} phone-home"}
        async with httpx.AsyncClient(transport=self.transport, timeout=TIMEOUT_S, follow_redirects=False) as client:
            for n in range(1, self.attempts + 1):
                try:
                    r = await client.post(url, content=summary.body(), headers=headers)
                except httpx.HTTPError as exc:
                    status, detail = None, f"{type(exc).__name__}: {exc}"[:MAX_REASON]
                else:
                    status, detail = r.status_code, r.reason_phrase
                    if r.is_success:
                        self._done(summary)
                        return Attempt(at=self.clock(), outcome="delivered", status=status, attempts=n,
                                       detail=detail, pending=False)
                    if r.status_code < 500:
                        self._done(summary)
                        return Attempt(at=self.clock(), outcome="refused", status=status, attempts=n,
                                       detail=f"{detail}: the vendor refused it; not retried", pending=False)
                if n < self.attempts:
                    await self.sleep(min(delay, self.max_delay))
                    delay *= 2
        return Attempt(at=self.clock(), outcome="failed", status=status, attempts=self.attempts, detail=detail,
                       pending=self.pending is not None)

    def _done(self, summary: Summary) -> None:
        if self.pending is summary:
            self.pending = None


def describe(settings: BoxSettings) -> str:
    """One line for the admin: off, or where and how often, and the last attempt."""
    if not settings.phone_home:
        return "off"
    last = read_attempt(settings)
    return (f"on, every {settings.phone_home_minutes} min to {settings.phone_home_url}; last: "
            f"{last.describe() if last else 'nothing sent yet'}")
