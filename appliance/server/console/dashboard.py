"""The dashboard: box state with the monitor's reasons, host telemetry, charts, restarts, uptime, models."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

import psutil
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from appliance.auth.sessions import Session
from appliance.health.history import snapshot
from appliance.server.console.access import render, require_admin, state
from appliance.store.manifest import Manifest, ParityFigures

router = APIRouter(prefix="/console", include_in_schema=False)
WINDOWS = {"1h": 3600, "24h": 86400}


@dataclass
class ModelView:
    id: str
    task: str
    sku: str
    backend: str
    precision: str
    size_mib: float
    context: int
    parity: list[str]
    self_test: str


def _parity_line(p: ParityFigures) -> str:
    figures = [f"token agreement {p.token_agreement:.3f}" if p.token_agreement is not None else "",
               f"greedy prefix {p.greedy_prefix_agreement:.2f}" if p.greedy_prefix_agreement is not None else "",
               f"min cosine {p.min_cosine:.6f}" if p.min_cosine is not None else "",
               f"max |Δ| {p.max_abs_logit_diff:.3g}" if p.max_abs_logit_diff is not None else "",
               f"max |Δ| {p.max_abs_diff:.2g}" if p.max_abs_diff is not None else "",
               f"relative {p.max_rel_diff:.2g}" if p.max_rel_diff is not None else ""]
    stage = f"{p.stage} {p.component}" if p.component else p.stage
    return f"{stage} ({p.precision}): " + ", ".join(f for f in figures if f) + ("" if p.passed else " - FAILED")


def model_views(runtime) -> list[ModelView]:
    manifests: list[tuple[Manifest, int]] = [(m.manifest, m.context_length) for m in runtime.chat.values()]
    manifests += [(m.manifest, m.manifest.engine.max_tokens) for m in runtime.embeddings.values()]
    manifests += [(m.manifest, m.manifest.engine.max_text_tokens) for m in runtime.images.values()]
    self_test = "passed at start-up" if runtime.ready else f"not run: {runtime.reason}"
    return [ModelView(m.model_id, m.task, m.sku, m.backend, m.precision,
                      round(sum(f.size for f in m.files) / 2**20, 1), ctx, [_parity_line(p) for p in m.parity],
                      self_test) for m, ctx in manifests]


def _duration(seconds: float) -> str:
    d, rest = divmod(int(seconds), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{d} d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def host_telemetry(request: Request, health: dict) -> dict:
    st = state(request)
    disk = shutil.disk_usage(st.settings.state_dir)
    accelerator = next((c for c in health["checks"] if c["name"].startswith("accelerator.")), None)
    return {"cpu_percent": psutil.cpu_percent(None), "cores": psutil.cpu_count(), "load1": round(os.getloadavg()[0], 2),
            "memory_percent": psutil.virtual_memory().percent,
            "disk_free_gib": round(disk.free / 2**30, 1), "disk_free_percent": round(100 * disk.free / disk.total, 1),
            "accelerator": accelerator}


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, session: Session = Depends(require_admin)) -> Response:
    rt = request.app.state.runtime
    health = snapshot(state(request).settings.health_db, 10)
    return render(request, "dashboard.html", session, active="dashboard", health=health,
                  host=host_telemetry(request, health), models=model_views(rt),
                  uptime=_duration(time.monotonic() - rt.started_at))


@router.get("/api/series")
async def series(request: Request, window: str = Query("1h"), _session: Session = Depends(require_admin)) -> Response:
    seconds = WINDOWS.get(window)
    if seconds is None:
        return JSONResponse({"error": f"window must be one of {', '.join(WINDOWS)}"}, status_code=400)
    return JSONResponse(request.app.state.timeseries.read(seconds).__dict__)
