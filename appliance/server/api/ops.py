"""Operational endpoints: liveness, readiness, Prometheus metrics, the monitor's view, per-key usage.

The probes a router, a load balancer or Kubernetes uses (/healthz, /health,
/readyz without a key) answer without credentials and say nothing but their
status code, as vLLM, llama-server and TGI do; details need a key.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from appliance.auth.keys import KeyRecord
from appliance.server.auth import require_key
from appliance.server.openai_errors import error_responses
from appliance.health.history import snapshot
from appliance.update.status import running_version

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict:
    """The process is alive and its event loop answers; says nothing about the engines."""
    return {"status": "alive"}


PROBE_RESPONSES: dict[int | str, dict] = {
    200: {"description": "ready: engines verified and self-tests passed (empty body)", "content": None},
    503: {"description": "not ready: engines loading or their self-test failed (empty body)", "content": None},
}


def _status_only(request: Request) -> Response:
    return Response(status_code=200 if request.app.state.runtime.ready else 503)


@router.get("/health", responses=PROBE_RESPONSES, response_class=Response)
async def health(request: Request) -> Response:
    """Ready or not, by status code alone and without credentials, where routers probe (vllm-router, sglang-router)."""
    return _status_only(request)


@router.get("/readyz", responses={**PROBE_RESPONSES, **error_responses(401)}, response_class=Response)
async def readyz(request: Request) -> Response:
    """Without a key the status code alone (for probes); with a valid key also the state, reason and models."""
    if "authorization" not in request.headers:
        return _status_only(request)
    await require_key(request)
    rt = request.app.state.runtime
    body = {"ready": rt.ready, "state": rt.state, "reason": rt.reason, "models": rt.model_ids(),
            "store": rt.store_info, "ready_seconds": rt.ready_seconds, "version": running_version()}
    return JSONResponse(body, status_code=200 if rt.ready else 503)


@router.get("/metrics", responses=error_responses(401))
async def metrics(request: Request, _key: KeyRecord = Depends(require_key)) -> Response:
    rt = request.app.state.runtime
    now = time.monotonic()
    for mid, model in rt.chat.items():
        rt.metrics.heartbeat.labels(mid).set(round(now - model.scheduler.heartbeat, 3))
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/health/monitor", responses=error_responses(401))
async def monitor_view(request: Request, _key: KeyRecord = Depends(require_key)) -> dict:
    """The health monitor's view (box state, each check, recent transitions) as JSON, for the console."""
    return snapshot(request.app.state.settings.health_db)


@router.get("/v1/usage", responses=error_responses(401))
async def key_usage(request: Request, key: KeyRecord = Depends(require_key)) -> dict:
    """The calling key's request and token counters (never content); the console shows all keys to the admin."""
    k = next((r for r in request.app.state.keys.list() if r.id == key.id), key)
    return {"id": k.id, "name": k.name, "requests": k.requests, "prompt_tokens": k.prompt_tokens,
            "completion_tokens": k.completion_tokens, "rate_limit_rpm": k.rate_limit_rpm,
            "token_quota": k.token_quota, "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None}
