"""Diagnostics and support: where the redacted bundle, the vendor's support window and its audit log live.

The vendor-diagnostics work fills these in; until then the page says what
each will do and that vendor access is off.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from appliance.auth.sessions import Session
from appliance.server.console.access import render, require_admin

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/support", response_class=HTMLResponse)
async def support(request: Request, session: Session = Depends(require_admin)) -> Response:
    return render(request, "support.html", session, active="support")
