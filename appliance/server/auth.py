"""Bearer API keys on every route but /healthz; per-key rate limits and quotas."""

from __future__ import annotations

from fastapi import Request

from appliance.auth.keys import KeyRecord
from appliance.server.openai_errors import ApiError


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "You didn't provide an API key. Send 'Authorization: Bearer <key>'; the box admin "
                            "creates keys with `appliance keys create NAME`.", code="invalid_api_key")
    return token.strip()


async def require_key(request: Request) -> KeyRecord:
    record = request.app.state.keys.authenticate(_bearer(request))
    if record is None:
        raise ApiError(401, "Incorrect or revoked API key provided.", code="invalid_api_key")
    request.state.key_id = record.id
    return record


async def require_key_with_limits(request: Request) -> KeyRecord:
    record = await require_key(request)
    decision = request.app.state.keys.check_limits(record)
    if decision is not None:
        headers = {"Retry-After": str(decision.retry_after)} if decision.retry_after else None
        raise ApiError(429, decision.reason, code=decision.kind, headers=headers)
    return record
