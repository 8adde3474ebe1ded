"""Who may see a console page, and how a page is rendered: setup first, then a signed-in admin.

Pages redirect (setup, sign-in) instead of answering 401, as a browser
expects; every state-changing request passes ``check_post``.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from appliance.auth.sessions import Session
from appliance.health.history import snapshot
from appliance.server.console.security import same_origin
from appliance.server.console.state import ConsoleState
from appliance.server.openai_errors import ApiError

SESSION_COOKIE = "appliance_session"
PAGES = (("dashboard", "Dashboard", "/console"), ("playground", "Playground", "/console/playground"),
         ("keys", "API keys", "/console/keys"), ("health", "Health", "/console/health"),
         ("settings", "Settings", "/console/settings"), ("support", "Diagnostics & support", "/console/support"))


class Redirect(Exception):
    def __init__(self, location: str):
        self.location = location


class Refused(Exception):
    """A console request that must not go on: forged, expired form, locked out."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


def state(request: Request) -> ConsoleState:
    return request.app.state.console


def session_of(request: Request) -> Session | None:
    st = state(request)
    if st.sessions is None:
        return None
    token = request.cookies.get(SESSION_COOKIE)

    def changed_at(username: str) -> float | None:
        admin = st.admins.get(username)
        return admin.password_changed_at if admin else None

    return st.sessions.lookup(token, changed_at)


def require_admin(request: Request) -> Session:
    """The signed-in admin's session; otherwise off to setup (unclaimed box) or sign-in.

    The console's own JSON calls get a 401 instead, which its scripts show, rather than a login page.
    """
    st = state(request)
    session = session_of(request) if st.admins.has_admin() else None
    if session is not None:
        return session
    if request.url.path.startswith("/console/api/"):
        raise ApiError(401, "your console session has ended; sign in again", code="session_expired")
    if not st.admins.has_admin():
        raise Redirect("/console/setup")
    raise Redirect("/console/login?next=" + quote(request.url.path))


def check_post(request: Request, session: Session | None, token: str | None) -> None:
    """Same origin, and (once signed in) the session's CSRF token: a forged cross-site POST stops here."""
    if not same_origin(request):
        raise Refused(403, "This request did not come from the box's own pages, so it was refused.")
    st = state(request)
    if session is not None and (st.sessions is None or not st.sessions.csrf_valid(session, token)):
        raise Refused(403, "This form has expired or was not sent by the console; reload the page and try again.")


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(SESSION_COOKIE, token, httponly=True, secure=request.url.scheme == "https",
                        samesite="strict", path="/")


def render(request: Request, template: str, session: Session | None, status: int = 200, **context) -> HTMLResponse:
    st = state(request)
    runtime = request.app.state.runtime
    box = snapshot(st.settings.health_db, 0)["box"] if session else None
    base = {"request": request, "session": session, "pages": PAGES,
            "box_name": st.settings.box_name or runtime.store_info.get("box") or "appliance",
            "csrf": st.sessions.csrf_token(session) if session and st.sessions else "",
            "box": box, "runtime": runtime}
    return st.templates.TemplateResponse(request, template, {**base, **context}, status_code=status)


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)
