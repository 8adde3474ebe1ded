"""Settings in the console: validated, saved over the factory defaults, applied, and one click to revert.

Box name and log level apply at once; the listening address, port and TLS
certificate need the server to restart, which it does by itself (exit 75,
restarted by systemd or ``appliance up``), with the reason on record.
Phone-home is the monitor's to do: it follows the saved file by itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from appliance.auth.admins import SetupError
from appliance.auth.passwords import WeakPassword
from appliance.auth.sessions import Session
from appliance.diagnostics.phonehome import read_attempt
from appliance.errors import ApplianceError
from appliance.health.exits import request_restart
from appliance.server.console import update_page
from appliance.server.console.access import SESSION_COOKIE, check_post, redirect, render, require_admin, state
from appliance.settings import (
    ADMIN_FIELDS,
    PHONE_HOME_FIELDS,
    BoxSettings,
    Settings,
    load_settings,
    read_admin_settings,
    validate_admin_settings,
    write_admin_settings,
)

router = APIRouter(prefix="/console", include_in_schema=False)
LIVE = ("box_name", "log_level", *PHONE_HOME_FIELDS)
MAX_PEM_BYTES = 64 * 1024


def _default(name: str) -> object:
    field = Settings.model_fields[name]
    return field.default_factory() if field.default_factory else field.default


def _running(request: Request) -> Settings:
    return request.app.state.settings


def _phone_home(running: Settings) -> BoxSettings:
    """What the monitor follows: the saved file under the environment (the CLI may have changed the file)."""
    try:
        return load_settings(BoxSettings, state_dir=running.state_dir)
    except ApplianceError:
        return running


def _page(request: Request, session: Session, status: int = 200, **extra) -> Response:
    st = state(request)
    running = _running(request)
    return render(request, "settings.html", session, status, active="settings", current=running,
                  saved=read_admin_settings(st.settings.state_dir),
                  previous=read_admin_settings(st.settings.state_dir, previous=True),
                  log_levels=("debug", "info", "warning", "error"),
                  fixed=sorted(running.pinned & {"box_name", "log_level", "host", "port", *PHONE_HOME_FIELDS}),
                  phone_home=_phone_home(running), phone_home_last=read_attempt(running),
                  update=update_page.view(request), **extra)


def apply(request: Request, values: dict) -> bool:
    """Validate and save the admin's settings; apply what can be applied live. True if a restart follows."""
    running = _running(request)
    admin = validate_admin_settings(values)
    fixed = [k for k in running.pinned & set(admin) if str(admin[k]) != str(getattr(running, k))]
    if fixed:
        raise ApplianceError(f"{', '.join(sorted(fixed))} is set on this box's command line or environment "
                             "(a flag or APPLIANCE_* variable) and wins over the console; change it there")
    if "tls_cert" in admin or "tls_key" in admin:
        from appliance.server.tls import ensure_certificate

        # refuses a missing, mismatched or unreadable pair before it is saved
        ensure_certificate(running.model_copy(update={k: Path(admin[k]) if k in admin else None
                                                      for k in ("tls_cert", "tls_key")}))
    write_admin_settings(running.state_dir, admin)
    running.box_name = admin.get("box_name")
    for name in set(PHONE_HOME_FIELDS) - running.pinned:
        setattr(running, name, admin.get(name, _default(name)))
    running.log_level = admin.get("log_level", Settings.model_fields["log_level"].default)
    logging.getLogger().setLevel(running.log_level.upper())
    restart = [k for k in ADMIN_FIELDS if k not in LIVE and k not in running.pinned
               and str(admin.get(k, _default(k))) != str(getattr(running, k))]
    if restart:
        request_restart(running.state_dir, f"settings changed in the console: {', '.join(restart)}",
                        by="the admin")
        request.app.state.restart_soon()
    return bool(restart)


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, session: Session = Depends(require_admin)) -> Response:
    return _page(request, session)


@router.post("/settings", response_class=HTMLResponse)
async def save(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form(""),
               box_name: str = Form(""), log_level: str = Form("info"), host: str = Form(""),
               port: str = Form(""), cors_origins: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    saved = read_admin_settings(state(request).settings.state_dir)
    values = {**saved, "box_name": box_name.strip() or None, "log_level": log_level, "host": host.strip(),
              "port": port.strip(),  # a field fixed by a flag is disabled in the form, so it arrives empty
              "cors_origins": [line.strip() for line in cors_origins.splitlines() if line.strip()]}
    try:
        restarting = apply(request, values)
    except ApplianceError as exc:
        return _page(request, session, 400, error=str(exc))
    return _page(request, session, notice="Saved and applied." if not restarting else
                 "Saved. The server restarts now to listen on the new address; reconnect there.")


@router.post("/settings/phone-home", response_class=HTMLResponse)
async def save_phone_home(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form(""),
                          phone_home: str = Form(""), phone_home_url: str = Form(""),
                          phone_home_minutes: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    saved = read_admin_settings(state(request).settings.state_dir)
    given = {"phone_home": phone_home == "on", "phone_home_url": phone_home_url.strip(),
             "phone_home_minutes": phone_home_minutes.strip()}
    values = {**saved, **{k: v for k, v in given.items() if k not in _running(request).pinned}}
    try:
        apply(request, values)
    except ApplianceError as exc:
        return _page(request, session, 400, error=str(exc))
    return _page(request, session, notice="Saved. The health monitor sends the first summary about a minute from now."
                 if values.get("phone_home") else "Saved. Phone-home is off: nothing is sent.")


@router.post("/settings/revert", response_class=HTMLResponse)
async def revert(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    previous = read_admin_settings(state(request).settings.state_dir, previous=True)
    try:
        restarting = apply(request, {k: previous.get(k) or "" for k in ADMIN_FIELDS})
    except ApplianceError as exc:
        return _page(request, session, 400, error=f"cannot revert: {exc}")
    return _page(request, session, notice="Reverted to the previous settings." +
                 (" The server restarts now." if restarting else ""))


async def _save_pem(upload: UploadFile, path: Path) -> None:
    data = await upload.read(MAX_PEM_BYTES + 1)
    if len(data) > MAX_PEM_BYTES:
        raise ApplianceError(f"{upload.filename} is larger than {MAX_PEM_BYTES // 1024} KiB; is it a PEM file?")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@router.post("/settings/tls", response_class=HTMLResponse)
async def upload_tls(request: Request, cert: UploadFile, key: UploadFile, session: Session = Depends(require_admin),
                     csrf_token: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    st = state(request)
    folder = st.settings.tls_dir / "installed"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    try:
        await _save_pem(cert, cert_path.with_suffix(".new"))
        await _save_pem(key, key_path.with_suffix(".new"))
        from appliance.server.tls import ensure_certificate

        fingerprint = ensure_certificate(st.settings.model_copy(update={
            "tls_cert": cert_path.with_suffix(".new"), "tls_key": key_path.with_suffix(".new")})).fingerprint_sha256
        os.replace(cert_path.with_suffix(".new"), cert_path)
        os.replace(key_path.with_suffix(".new"), key_path)
        saved = read_admin_settings(st.settings.state_dir)
        apply(request, {**saved, "tls_cert": str(cert_path), "tls_key": str(key_path)})
    except ApplianceError as exc:
        return _page(request, session, 400, error=f"certificate refused: {exc}")
    return _page(request, session, notice=f"Certificate installed (SHA-256 {fingerprint}); the server restarts "
                                          "now to use it.")


@router.post("/settings/password", response_class=HTMLResponse)
async def change_password(request: Request, session: Session = Depends(require_admin), csrf_token: str = Form(""),
                          current: str = Form(""), new: str = Form(""), confirm: str = Form("")) -> Response:
    check_post(request, session, csrf_token)
    st = state(request)
    if new != confirm:
        return _page(request, session, 400, error="The two new passwords differ.")
    try:
        st.admins.change_password(session.username, current, new)
    except (SetupError, WeakPassword) as exc:
        return _page(request, session, 400, error=str(exc))
    st.sessions.revoke_all(session.username)  # type: ignore[union-attr]
    response = redirect("/console/login?changed=1")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
