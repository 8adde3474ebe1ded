"""``appliance cluster``: several boxes as one OpenAI-compatible endpoint, behind vllm-router."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from appliance.cli.options import settings_command
from appliance.cluster.router import box_url, check_box, find_router, router_command, router_environment, run_router
from appliance.cluster.settings import ClusterSettings

CLUSTER_OPTIONS = ("host", "port", "metrics_port", "policy", "ca", "allow_plain_http", "health_interval",
                   "health_failures", "health_successes", "retries", "breaker_failures", "breaker_seconds",
                   "startup_timeout", "log_level")


@settings_command(ClusterSettings, *CLUSTER_OPTIONS)
def cluster(
    settings: ClusterSettings,
    boxes: Annotated[list[str], typer.Argument(metavar="BOX_URL...", help="each box, e.g. https://192.168.1.21:8443")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check the boxes and print the router's command; "
                                                            "do not start it")] = False,
) -> None:
    """Start the router in front of BOXES: prefix-aware routing, a box out while not ready, retries elsewhere.

    Clients use http://HOST:PORT/v1 with a key every box accepts (`appliance keys import` on each).
    """
    urls = [box_url(b) for b in boxes]
    command = router_command(settings, urls, find_router())
    for check in (check_box(settings, url) for url in urls):
        typer.echo(f"{check.url}: {'ready' if check.ready else check.problem}")
    typer.echo(f"router: http://{settings.host}:{settings.port}/v1 ({settings.policy}), "
               f"boxes probed at /health every {settings.health_interval} s")
    if dry_run:
        typer.echo(shlex.join(command))
        return
    run_router(command, router_environment(settings))
