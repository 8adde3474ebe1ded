"""The health page: each check with its state and reason, the restart record, history, and a re-run button."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from appliance.auth.sessions import Session
from appliance.health.history import snapshot
from appliance.health.run_now import request_check_run
from appliance.server.console.access import check_post, redirect, render, require_admin, state

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/health", response_class=HTMLResponse)
async def health_page(request: Request, session: Session = Depends(require_admin), requested: int = 0) -> Response:
    snap = snapshot(state(request).settings.health_db, 100)
    restarts = [h for h in snap["history"] if h["kind"] == "restart"]
    return render(request, "health.html", session, active="health", health=snap, restarts=restarts,
                  requested=bool(requested))


@router.post("/health/run")
async def run_checks(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    request_check_run(state(request).settings.state_dir)
    return redirect("/console/health?requested=1")
