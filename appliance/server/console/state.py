"""What the console keeps while the server runs: the admin and session stores, attempt limits, templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastapi.templating import Jinja2Templates

from appliance.auth.admins import AdminStore
from appliance.auth.attempts import AttemptLimiter
from appliance.auth.sessions import SessionStore
from appliance.settings import Settings

HERE = Path(__file__).parent
LOGIN_FAILURES, LOGIN_WINDOW_S = 5, 15 * 60
SETUP_FAILURES, SETUP_WINDOW_S = 5, 15 * 60


@dataclass
class ConsoleState:
    settings: Settings
    admins: AdminStore
    sessions: SessionStore | None  # None until first boot made the session secret
    templates: Jinja2Templates
    logins: AttemptLimiter = field(default_factory=lambda: AttemptLimiter(LOGIN_FAILURES, LOGIN_WINDOW_S))
    setups: AttemptLimiter = field(default_factory=lambda: AttemptLimiter(SETUP_FAILURES, SETUP_WINDOW_S))

    @classmethod
    def open(cls, settings: Settings) -> ConsoleState:
        settings.ensure_state_dir()
        secret_file = settings.session_secret_file
        sessions = SessionStore(settings.console_db, secret_file.read_bytes()) if secret_file.is_file() else None
        templates = Jinja2Templates(directory=HERE / "templates")
        return cls(settings, AdminStore(settings.console_db), sessions, templates)

    def close(self) -> None:
        self.admins.close()
        if self.sessions is not None:
            self.sessions.close()
