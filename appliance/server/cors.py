"""CORS for browser clients on the LAN calling the API directly (a web app on another origin).

Only the origins the admin lists (``cors_origins``) are allowed; by default
none, so only the console, which is served from the box's own origin,
reaches the API from a browser. Credentials are bearer keys, never
cookies: no cross-origin request carries the console's session.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from appliance.errors import ApplianceError
from appliance.settings import Settings

ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


def install(app: FastAPI, settings: Settings) -> None:
    origins = [o.rstrip("/") for o in settings.cors_origins]
    bad = [o for o in origins if o != "*" and not ORIGIN.match(o)]
    if bad:
        raise ApplianceError(f"cors_origins: {bad[0]!r} is not an origin; write scheme://host[:port], "
                             "e.g. http://192.168.1.20:3000, or * for any")
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                           allow_headers=["*"], allow_credentials=False, max_age=600,
                           expose_headers=["Retry-After", "X-Request-Id"])
