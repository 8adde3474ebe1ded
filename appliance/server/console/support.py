"""Diagnostics and support: collect, review and release bundles; open and close the vendor's window; its audit log.

Vendor access is off until the admin acts here (or with the CLI). A bundle
is collected and redacted on the box, listed file by file for the admin to
read, and only then encrypted to the vendor key and offered for download.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, Response

from appliance.auth.sessions import Session
from appliance.auth.support import DEFAULT_HOURS, MAX_HOURS, SupportStore
from appliance.diagnostics.bundle import BundleState
from appliance.diagnostics.collect import collect
from appliance.diagnostics.redaction import describe_rules
from appliance.diagnostics.review import discard, list_bundles, load_index, read_file, release, released_path
from appliance.errors import ApplianceError
from appliance.server.console.access import Refused, check_post, redirect, render, require_admin, state

router = APIRouter(prefix="/console", include_in_schema=False)


def _support(request: Request) -> SupportStore:
    return request.app.state.support


def _page(request: Request, session: Session, status: int = 200, **context) -> Response:
    store = _support(request)
    window = store.latest()
    now = time.time()
    return render(request, "support.html", session, status, active="support", bundles=list_bundles(
        state(request).settings), window=window, window_state=window.state(now).value if window else None,
        audit=store.audit_log(100), default_hours=DEFAULT_HOURS, max_hours=MAX_HOURS, now=now,
        vendor_key=state(request).settings.vendor_key, **context)


@router.get("/support", response_class=HTMLResponse)
async def support(request: Request, session: Session = Depends(require_admin)) -> Response:
    return _page(request, session)


@router.post("/support/bundles")
async def collect_bundle(request: Request, session: Session = Depends(require_admin),
                         csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    index, _ = await run_in_threadpool(collect, state(request).settings)
    return redirect(f"/console/support/bundles/{index.id}")


@router.get("/support/bundles/{bundle_id}", response_class=HTMLResponse)
async def bundle_page(request: Request, bundle_id: str, session: Session = Depends(require_admin)) -> Response:
    index, bundle_state = _index(request, bundle_id)
    return render(request, "support_bundle.html", session, active="support", index=index,
                  staged=bundle_state is BundleState.STAGED, rules=describe_rules())


@router.get("/support/bundles/{bundle_id}/files/{path:path}", response_class=HTMLResponse)
async def bundle_file(request: Request, bundle_id: str, path: str, session: Session = Depends(require_admin)) -> Response:
    try:
        text = read_file(state(request).settings, bundle_id, path)
    except ApplianceError as exc:
        raise Refused(404, str(exc)) from None
    return render(request, "support_file.html", session, active="support", bundle_id=bundle_id, path=path, text=text)


@router.post("/support/bundles/{bundle_id}/release")
async def release_bundle(request: Request, bundle_id: str, session: Session = Depends(require_admin),
                         csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    _index(request, bundle_id)
    try:
        await run_in_threadpool(release, state(request).settings, bundle_id)
    except ApplianceError as exc:
        raise Refused(409, str(exc)) from None
    return redirect(f"/console/support/bundles/{bundle_id}")


@router.post("/support/bundles/{bundle_id}/discard")
async def discard_bundle(request: Request, bundle_id: str, session: Session = Depends(require_admin),
                         csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    _index(request, bundle_id)
    discard(state(request).settings, bundle_id)
    return redirect("/console/support")


@router.get("/support/bundles/{bundle_id}/download")
async def download(request: Request, bundle_id: str, session: Session = Depends(require_admin)) -> Response:
    _, bundle_state = _index(request, bundle_id)
    path = released_path(state(request).settings, bundle_id)
    if bundle_state is not BundleState.RELEASED or not path.is_file():
        raise Refused(404, "This bundle has not been released yet; review it and release it first.")
    return FileResponse(path, media_type="application/octet-stream", filename=path.name)


@router.post("/support/window/open", response_class=HTMLResponse)
async def open_window(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form(""),
                      hours: float = Form(DEFAULT_HOURS)) -> Response:
    check_post(request, session, csrf_token)
    try:
        window, token = _support(request).open(hours, by=f"console:{session.username}")
    except ApplianceError as exc:
        return _page(request, session, 400, error=str(exc))
    return _page(request, session, token=token)


@router.post("/support/window/close")
async def close_window(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    _support(request).close_window(by=f"console:{session.username}")
    return redirect("/console/support")


def _index(request: Request, bundle_id: str):
    try:
        return load_index(state(request).settings, bundle_id)
    except ApplianceError as exc:
        raise Refused(404, str(exc)) from None
