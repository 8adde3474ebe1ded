"""API keys in the console: create (shown once, with ready-to-run examples), limits, usage, revoke.

The same key store as ``appliance keys``; the box's internal keys are listed
for their usage but cannot be revoked here (the monitor and console need them).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from appliance.auth.keys import INTERNAL_KEY_PREFIX
from appliance.auth.sessions import Session
from appliance.errors import ApplianceError
from appliance.server.console.access import check_post, redirect, render, require_admin, state
from appliance.server.console.security import own_origin
from appliance.server.tls import TlsFiles, ensure_certificate

router = APIRouter(prefix="/console", include_in_schema=False)


def _optional_int(text: str, what: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ApplianceError(f"{what} must be a whole number, or empty for no limit") from None


def _certificate(request: Request) -> TlsFiles | None:
    """The certificate the box serves, when it serves one."""
    if request.url.scheme != "https":
        return None
    return ensure_certificate(state(request).settings)


def _page(request: Request, session: Session, status: int = 200, **extra) -> Response:
    keys = request.app.state.keys.list()
    cert = _certificate(request)
    return render(request, "keys.html", session, status, active="keys", keys=keys, internal=INTERNAL_KEY_PREFIX,
                  base_url=own_origin(request) + "/v1", fingerprint=cert.fingerprint_sha256 if cert else None,
                  self_signed=cert is not None and state(request).settings.tls_cert is None,
                  chat_models=list(request.app.state.runtime.chat), **extra)


@router.get("/certificate.pem")
async def certificate(request: Request, _session: Session = Depends(require_admin)) -> Response:
    """The box's certificate, for clients to trust instead of switching verification off."""
    cert = _certificate(request)
    if cert is None:
        return Response("this box serves plain HTTP; it has no certificate\n", status_code=404,
                        media_type="text/plain")
    return Response(cert.cert.read_bytes(), media_type="application/x-pem-file",
                    headers={"Content-Disposition": 'attachment; filename="appliance.pem"'})


@router.get("/keys", response_class=HTMLResponse)
async def keys_page(request: Request, session: Session = Depends(require_admin)) -> Response:
    return _page(request, session)


@router.post("/keys", response_class=HTMLResponse)
async def create_key(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form(""),
                     name: str = Form(""), rate_limit: str = Form(""), token_quota: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    try:
        if name.strip().startswith(INTERNAL_KEY_PREFIX):
            raise ApplianceError(f"names starting with {INTERNAL_KEY_PREFIX!r} are the box's own")
        record, secret = request.app.state.keys.create(
            name, rate_limit_rpm=_optional_int(rate_limit, "Rate limit"),
            token_quota=_optional_int(token_quota, "Token quota"))
    except ApplianceError as exc:
        return _page(request, session, 400, error=str(exc), form={"name": name, "rate_limit": rate_limit,
                                                                   "token_quota": token_quota})
    return _page(request, session, 201, created=record, secret=secret)


@router.post("/keys/{key_id}/limits", response_class=HTMLResponse)
async def set_limits(key_id: str, request: Request, session: Session = Depends(require_admin),
                     csrf_token: str = Form(""), rate_limit: str = Form(""), token_quota: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    try:
        request.app.state.keys.set_limits(key_id, _optional_int(rate_limit, "Rate limit"),
                                          _optional_int(token_quota, "Token quota"))
    except ApplianceError as exc:
        return _page(request, session, 400, error=str(exc))
    return redirect("/console/keys")


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
async def revoke(key_id: str, request: Request, session: Session = Depends(require_admin),
                 csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    keys = request.app.state.keys
    target = next((k for k in keys.list() if k.id == key_id), None)
    if target is not None and target.name.startswith(INTERNAL_KEY_PREFIX):
        return _page(request, session, 400, error=f"{target.name} is the box's own key; it cannot be revoked here")
    try:
        keys.revoke(key_id)
    except ApplianceError as exc:
        return _page(request, session, 404, error=str(exc))
    return redirect("/console/keys")
