"""The vendor's read-only routes under /v1/support, open only with the token of an open support window.

A support token is not an API key: it cannot reach inference, keys, the
console or settings, and an API key cannot reach these. Every call here,
allowed or refused, is written to the audit log by ``SupportAudit``; every
answer passes through the diagnostics redaction.
"""

from __future__ import annotations

import dataclasses
import json

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from appliance.auth.support import SupportStore, Window
from appliance.diagnostics.collect import collect
from appliance.diagnostics.collectors.hardware import Hardware
from appliance.diagnostics.collectors.health_record import HealthRecord
from appliance.diagnostics.collectors.self_tests import SelfTests
from appliance.diagnostics.collectors.services import Services
from appliance.diagnostics.collectors.store_manifests import StoreManifests
from appliance.diagnostics.live import gather
from appliance.diagnostics.review import release
from appliance.health.run_now import request_check_run
from appliance.server.auth import _bearer
from appliance.server.openai_errors import ApiError

PREFIX = "/v1/support"
router = APIRouter(prefix=PREFIX, tags=["support"])


async def require_support(request: Request) -> Window:
    store: SupportStore = request.app.state.support
    window = store.authenticate(_bearer(request))
    if window is None:
        raise ApiError(401, "No support window is open for this token: it was closed, it ran out, or the token is "
                            "wrong. The box admin opens one in the console or with `appliance support open`.",
                       code="support_window_closed")
    request.state.support_window = window.id
    return window


def _files(files: dict[str, str]) -> Response:
    return Response(json.dumps({name: text for name, text in files.items()}, indent=1), media_type="application/json")


@router.get("/health")
async def health(request: Request, _: Window = Depends(require_support)) -> Response:
    return _files(await run_in_threadpool(gather, request.app.state.settings, HealthRecord()))


@router.get("/telemetry")
async def telemetry(request: Request, _: Window = Depends(require_support), window_s: float = 3600) -> Response:
    series = dataclasses.asdict(request.app.state.timeseries.read(min(max(window_s, 60), 86400)))
    files = await run_in_threadpool(gather, request.app.state.settings, Hardware())
    files["timeseries.json"] = json.dumps(series)
    return _files(files)


@router.get("/logs")
async def logs(request: Request, _: Window = Depends(require_support)) -> Response:
    return _files(await run_in_threadpool(gather, request.app.state.settings, Services()))


@router.get("/manifests")
async def manifests(request: Request, _: Window = Depends(require_support)) -> Response:
    return _files(await run_in_threadpool(gather, request.app.state.settings, StoreManifests()))


@router.post("/selftest")
async def selftest(request: Request, _: Window = Depends(require_support)) -> Response:
    """Ask the monitor to run every check now (the golden self-tests among them); read them back from /health."""
    settings = request.app.state.settings
    request_check_run(settings.state_dir)
    last = await run_in_threadpool(gather, settings, SelfTests())
    return Response(json.dumps({"requested": True, "last_results": json.loads(last["self-tests.json"])}),
                    media_type="application/json")


@router.post("/bundle")
async def bundle(request: Request, _: Window = Depends(require_support)) -> Response:
    """A full bundle, encrypted to the vendor key installed on the box; only the vendor's private key opens it."""
    settings = request.app.state.settings

    def make() -> str:
        index, _ = collect(settings)
        return str(release(settings, index.id, settings.vendor_key))

    path = await run_in_threadpool(make)
    return FileResponse(path, media_type="application/octet-stream", filename=path.rsplit("/", 1)[-1])


class SupportAudit:
    """Writes one audit row per request under /v1/support: time, route, status, outcome."""

    def __init__(self, app, store: SupportStore):
        self.app, self.store = app, store

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        status = [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            window = scope.get("state", {}).get("support_window")
            code = status[0]
            outcome = ("allowed" if code < 400 else "refused: no open window for the token" if code == 401 else
                       "not found" if code == 404 else "failed")
            self.store.audit(window, scope["method"], scope["path"], code, outcome)


