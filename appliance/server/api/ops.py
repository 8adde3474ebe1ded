"""Operational endpoints: liveness, readiness, Prometheus metrics, per-key usage."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from appliance.auth.keys import KeyRecord
from appliance.server.auth import require_key
from appliance.server.openai_errors import error_responses
from appliance.health.history import snapshot

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    """The process is alive and its event loop answers; says nothing about the engines."""
    return {"status": "alive"}


@router.get("/readyz", responses=error_responses(401, 503))
async def readyz(request: Request, _key: KeyRecord = Depends(require_key)) -> JSONResponse:
    rt = request.app.state.runtime
    body = {"ready": rt.ready, "state": rt.state, "reason": rt.reason, "models": rt.model_ids(),
            "store": rt.store_info, "ready_seconds": rt.ready_seconds}
    return JSONResponse(body, status_code=200 if rt.ready else 503)


@router.get("/metrics", responses=error_responses(401))
async def metrics(request: Request, _key: KeyRecord = Depends(require_key)) -> Response:
    rt = request.app.state.runtime
    now = time.monotonic()
    for mid, model in rt.chat.items():
        rt.metrics.heartbeat.labels(mid).set(round(now - model.scheduler.heartbeat, 3))
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health", responses=error_responses(401))
async def health(request: Request, _key: KeyRecord = Depends(require_key)) -> dict:
    """The health monitor's view (box state, each check, recent transitions) as JSON, for the console."""
    return snapshot(request.app.state.settings.health_db)


@router.get("/v1/usage", responses=error_responses(401))
async def key_usage(request: Request, key: KeyRecord = Depends(require_key)) -> dict:
    """The calling key's request and token counters (never content); the console shows all keys to the admin."""
    k = next((r for r in request.app.state.keys.list() if r.id == key.id), key)
    return {"id": k.id, "name": k.name, "requests": k.requests, "prompt_tokens": k.prompt_tokens,
            "completion_tokens": k.completion_tokens, "rate_limit_rpm": k.rate_limit_rpm,
            "token_quota": k.token_quota, "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}
