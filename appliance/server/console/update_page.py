"""Software update in the console's settings: upload a signed bundle, watch it being applied, see the last one.

The server runs unprivileged, so it only receives and checks a bundle (signature, this box's SKU and version,
every digest) before handing it to appliance-update.service, which applies it as root and reports progress
back (appliance/update/handover.py). A refused bundle is deleted and nothing is handed over.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import anyio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from appliance.auth.sessions import Session
from appliance.errors import ApplianceError
from appliance.server.console.access import check_post, require_admin
from appliance.server.openai_errors import ApiError
from appliance.settings import Settings
from appliance.store.signing import load_public_key, trusted_key_path
from appliance.update import bundle, handover, record
from appliance.update.apply import check
from appliance.update.handover import ApplyProgress, ApplyRequest
from appliance.update.manifest import UpdateManifest
from appliance.update.record import UpdateRecord
from appliance.update.slots import Disk
from appliance.update.status import running_version

router = APIRouter(prefix="/console", include_in_schema=False)
FREE_MARGIN = 64 << 20  # left on the data partition for the box's own state while a bundle is received


class UpdateView(BaseModel):
    """What the settings page shows and the upload script polls."""

    running: str
    progress: ApplyProgress | None
    last_update: UpdateRecord | None


class Accepted(BaseModel):
    version: str
    size: int
    reboot: bool


def view(request: Request) -> UpdateView:
    settings: Settings = request.app.state.settings
    return UpdateView(running=running_version(_disk(request)), progress=handover.read_progress(settings.state_dir),
                      last_update=record.load(settings.state_dir))


def _disk(request: Request) -> Disk:
    return getattr(request.app.state, "update_disk", None) or Disk()


def _checked(path: Path, disk: Disk, key: Ed25519PublicKey) -> UpdateManifest:
    manifest = bundle.read_manifest(path, key)
    check(manifest, disk.release(), allow_downgrade=False, accept_no_rollback=False)
    bundle.verify(path, key)
    return manifest


@router.put("/api/update", status_code=202)
async def upload(request: Request, reboot: bool = False, session: Session = Depends(require_admin)) -> JSONResponse:
    """The bundle is the request body, streamed to the data partition; the page sends the file as it is."""
    check_post(request, session, request.headers.get("x-csrf-token"))
    settings: Settings = request.app.state.settings
    if (current := handover.busy(settings.state_dir)) is not None:
        raise ApiError(409, f"the update to {current.version} is still {current.state.value}; wait until it has "
                       "finished or failed", code="update_in_progress")
    folder = handover.directory(settings.state_dir)
    room = shutil.disk_usage(folder).free - FREE_MARGIN
    length = int(request.headers.get("content-length") or 0)
    if length > room:
        raise ApiError(413, f"the bundle is {length >> 20} MiB and the data partition has {max(room, 0) >> 20} MiB "
                       "to spare; free space (old support bundles, logs) and upload again", code="no_space")
    part = folder / handover.RECEIVING
    try:
        size = await _receive(request, part, room)
        if size == 0:
            raise ApiError(400, "the upload was empty; choose the bundle file (.bundle) from the vendor", "file",
                           "update_refused")
        key_path, _ = trusted_key_path(settings.trusted_key)
        manifest = await anyio.to_thread.run_sync(_checked, part, _disk(request), load_public_key(key_path))
        handover.hand_over(settings.state_dir, part, ApplyRequest(version=manifest.version, size=manifest.size,
                                                                  reboot=reboot, by=session.username,
                                                                  at=time.time()))
    except ApplianceError as exc:
        reason = str(exc).replace(str(part), "the uploaded file")  # the admin's file, not our temporary name
        raise ApiError(400, f"update refused: {reason}", "file", "update_refused") from None
    except ClientDisconnect:
        raise ApiError(400, "the upload was cut short; upload the bundle again", "file", "upload_incomplete") from None
    finally:
        part.unlink(missing_ok=True)
    return JSONResponse(Accepted(version=manifest.version, size=manifest.size, reboot=reboot).model_dump(),
                        status_code=202)


async def _receive(request: Request, part: Path, room: int) -> int:
    size = 0
    with part.open("wb") as fh:
        async for chunk in request.stream():
            size += len(chunk)
            if size > room:
                raise ApiError(413, f"the bundle is larger than the {room >> 20} MiB the data partition has to spare",
                               code="no_space")
            await anyio.to_thread.run_sync(fh.write, chunk)
    return size


@router.get("/api/update")
async def progress(request: Request, session: Session = Depends(require_admin)) -> JSONResponse:
    return JSONResponse(view(request).model_dump(mode="json"))


@router.post("/api/update/cancel")
async def cancel(request: Request, session: Session = Depends(require_admin)) -> JSONResponse:
    check_post(request, session, request.headers.get("x-csrf-token"))
    if not handover.cancel(request.app.state.settings.state_dir):
        raise ApiError(409, "no update is waiting to be applied (one being written cannot be stopped)",
                       code="nothing_to_cancel")
    return JSONResponse(view(request).model_dump(mode="json"))
