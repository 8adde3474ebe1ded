"""Put the console into the daemon's app: its routes, static files, security headers, redirects."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from appliance.server.console import dashboard, health, keys, onboarding, playground, settings_page, support, update_page
from appliance.server.console.access import Redirect, Refused, render, session_of
from appliance.server.console.security import SecurityHeaders
from appliance.server.console.state import HERE, ConsoleState
from appliance.settings import Settings


def install(app: FastAPI, settings: Settings) -> ConsoleState:
    console = ConsoleState.open(settings)
    app.state.console = console
    for module in (onboarding, dashboard, playground, keys, health, settings_page, update_page, support):
        app.include_router(module.router)
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)

    async def on_redirect(_: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.location, status_code=303)

    async def on_refused(request: Request, exc: Refused) -> Response:
        return render(request, "refused.html", session_of(request), exc.status, message=exc.message)

    app.add_exception_handler(Redirect, on_redirect)
    app.add_exception_handler(Refused, on_refused)
    app.add_middleware(SecurityHeaders)
    return console
