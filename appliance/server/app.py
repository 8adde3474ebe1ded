"""The FastAPI application: API, ops endpoints, metrics middleware, lifecycle."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from appliance import __version__
from appliance.auth.keys import KeyStore
from appliance.auth.support import SupportStore
from appliance.server import cors, openai_errors
from appliance.server.api import images, ollama, openai, ops, support
from appliance.server.console.install import install as install_console
from appliance.server.metrics import Metrics
from appliance.server.notify import Notifier
from appliance.server.runtime import Runtime
from appliance.server.timeseries import PERIOD_S as TIMESERIES_PERIOD_S
from appliance.server.timeseries import TimeSeries
from appliance.settings import Settings

log = logging.getLogger(__name__)

HEARTBEAT_STALE_S = 30.0


class RequestMetrics:
    """Count requests by route template and status, and time them, without touching bodies."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, str(status[0])).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - start)


async def _watchdog(runtime: Runtime, notifier: Notifier) -> None:
    """WATCHDOG=1 only while the event loop runs and no busy scheduler is stuck."""
    interval = notifier.watchdog_interval or 5.0
    while True:
        await asyncio.sleep(interval)
        now = time.monotonic()
        stuck = [mid for mid, m in runtime.chat.items()
                 if (m.scheduler.running or m.scheduler.queue_depth) and now - m.scheduler.heartbeat > HEARTBEAT_STALE_S]
        if stuck:
            log.error("scheduler of %s made no progress for %.0f s; withholding the watchdog", stuck, HEARTBEAT_STALE_S)
            continue
        notifier.watchdog()


def _not_serving(notifier: Notifier, reason: str) -> None:
    """A refused store does not mend by restarting: stay up so /readyz and the console can say why, tell systemd
    the start is over (with the reason as its status), and put the reason on stderr, the box's screen."""
    notifier.ready(f"not serving: {reason}")
    print(f"appliance: not serving: {reason}", file=sys.stderr, flush=True)


RESTART_EXIT_CODE = 75  # EX_TEMPFAIL: "start me again"; systemd's Restart=on-failure and `appliance up` do
RESTART_DELAY_S = 1.0  # lets the page that asked for the restart reach the browser first


async def _sample_timeseries(series: TimeSeries, metrics: Metrics) -> None:
    while True:
        try:
            series.sample(metrics)
        except Exception:  # a full disk must not stop the server; the monitor reports the disk
            log.exception("could not record the time series")
        await asyncio.sleep(TIMESERIES_PERIOD_S)


def create_app(settings: Settings, notifier: Notifier | None = None) -> FastAPI:
    notifier = notifier or Notifier.from_environment()
    metrics = Metrics()
    runtime = Runtime(settings, metrics)
    settings.ensure_state_dir()
    keys = KeyStore(settings.keys_db)
    series = TimeSeries(settings.timeseries_db)
    support_store = SupportStore(settings.support_db)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        loop = asyncio.get_running_loop()
        runtime.on_ready.append(lambda: loop.call_soon_threadsafe(notifier.ready, runtime.reason))
        runtime.on_failed.append(lambda reason: loop.call_soon_threadsafe(_not_serving, notifier, reason))
        notifier.status("loading engines")
        runtime.start_loading()
        tasks = [asyncio.create_task(_watchdog(runtime, notifier)), asyncio.create_task(_sample_timeseries(series, metrics))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            runtime.shutdown()
            keys.close()
            series.close()
            support_store.close()
            console.close()

    app = FastAPI(title="appliance", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.runtime = runtime
    app.state.keys = keys
    app.state.settings = settings
    app.state.timeseries = series
    app.state.support = support_store
    app.state.restart_requested = False

    def restart_soon() -> None:
        """Stop serving after this response; run_server then exits with RESTART_EXIT_CODE."""
        app.state.restart_requested = True
        server = getattr(app.state, "uvicorn", None)
        if server is not None:
            asyncio.get_running_loop().call_later(RESTART_DELAY_S, setattr, server, "should_exit", True)

    app.state.restart_soon = restart_soon
    openai_errors.install(app)
    app.include_router(ops.router)
    app.include_router(openai.router)
    app.include_router(ollama.router)
    app.include_router(images.router)
    app.include_router(support.router)
    console = install_console(app, settings)
    app.add_middleware(support.SupportAudit, store=support_store)
    app.add_middleware(RequestMetrics, metrics=metrics)
    cors.install(app, settings)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """FastAPI's schema, less the 422 it adds to every route with a body: the box answers those as 400."""
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        for path in schema["paths"].values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        app.openapi_schema = schema
    return app.openapi_schema
