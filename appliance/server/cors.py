"""CORS for browser clients on the LAN calling the API directly (a web app on another origin).

Only the origins the admin lists (``cors_origins``) are allowed; by default
none, so only the console, which is served from the box's own origin,
reaches the API from a browser. Credentials are bearer keys, never
cookies: no cross-origin request carries the console's session.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from appliance.settings import Settings


def install(app: FastAPI, settings: Settings) -> None:
    """Origins were checked when the settings were loaded (``Settings.cors_origins``)."""
    origins = settings.cors_origins
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], allow_credentials=False, max_age=600,
                           expose_headers=["Retry-After", "X-Request-Id"])
