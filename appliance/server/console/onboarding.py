"""Claiming the box (setup with the one-time code), signing in and out."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from appliance.auth.admins import SetupError
from appliance.auth.passwords import WeakPassword
from appliance.server.console.access import (
    SESSION_COOKIE,
    check_post,
    redirect,
    render,
    session_of,
    set_session_cookie,
    state,
)

router = APIRouter(prefix="/console", include_in_schema=False)


def _client(request: Request) -> str:
    return "client:" + (request.client.host if request.client else "?")


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/console") and not target.startswith("//") else "/console"


@router.get("/setup", response_class=HTMLResponse)
async def setup_page(request: Request) -> Response:
    st = state(request)
    if st.admins.has_admin():
        return redirect("/console/login")
    return render(request, "setup.html", None, ready=st.sessions is not None, code_waiting=st.admins.has_setup_code())


@router.post("/setup", response_class=HTMLResponse)
async def setup(request: Request, code: str = Form(""), username: str = Form("admin"), password: str = Form(""),
                confirm: str = Form("")) -> Response:
    check_post(request, None, None)
    st = state(request)
    if st.admins.has_admin():
        return redirect("/console/login")
    fields = {"username": username, "ready": st.sessions is not None, "code_waiting": st.admins.has_setup_code()}
    wait = st.setups.retry_after(_client(request))
    if wait:
        return render(request, "setup.html", None, 429, error=f"Too many wrong setup codes from this computer; "
                                                             f"try again in {wait // 60 + 1} min.", **fields)
    if password != confirm:
        return render(request, "setup.html", None, 400, error="The two passwords differ.", **fields)
    try:
        admin = st.admins.create_first_admin(code, username, password, st.settings.box_name or "")
    except WeakPassword as exc:
        return render(request, "setup.html", None, 400, error=f"Choose a stronger password: {exc}", **fields)
    except SetupError as exc:
        if "setup code" in str(exc):
            st.setups.failed(_client(request))
        return render(request, "setup.html", None, 400, error=str(exc), **fields)
    response = redirect("/console")
    set_session_cookie(response, request, st.sessions.create(admin.username))  # type: ignore[union-attr]
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: str | None = None) -> Response:
    st = state(request)
    if not st.admins.has_admin():
        return redirect("/console/setup")
    if session_of(request) is not None:
        return redirect(_safe_next(next))
    return render(request, "login.html", None, next=_safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, username: str = Form(""), password: str = Form(""),
                next: str = Form("/console")) -> Response:
    check_post(request, None, None)
    st = state(request)
    keys = (_client(request), "account:" + username.strip())
    wait = st.logins.retry_after(*keys)
    if wait:
        response = render(request, "login.html", None, 429, next=_safe_next(next), username=username,
                          error=f"Too many failed sign-ins; try again in {wait // 60 + 1} min.")
        response.headers["Retry-After"] = str(wait)
        return response
    admin = st.admins.authenticate(username.strip(), password)
    if admin is None or st.sessions is None:
        st.logins.failed(*keys)
        return render(request, "login.html", None, 401, next=_safe_next(next), username=username,
                      error="That user name and password do not match.")
    st.logins.succeeded(*keys)
    response = redirect(_safe_next(next))
    set_session_cookie(response, request, st.sessions.create(admin.username))
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: str = Form("")) -> Response:
    session = session_of(request)
    check_post(request, session, csrf_token)
    st = state(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token and st.sessions is not None:
        st.sessions.revoke(token)
    response = redirect("/console/login")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
