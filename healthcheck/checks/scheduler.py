"""The scheduler from its metrics: stuck (work waiting, no engine steps) or time to first token far above usual."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from appliance.health.status import Result
from healthcheck.checks.base import UNREACHABLE, Check


Samples = dict[tuple[str, str], float]


def model_samples(text: str) -> Samples:
    """Per-model samples of the server's metrics as {(sample name, model): value}, via prometheus_client's parser."""
    return {(s.name, s.labels["model"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if "model" in s.labels and "le" not in s.labels}


class SchedulerSignals(Check):
    """Queue stuck (work waiting, no engine steps) or time to first token far above its usual level."""

    name = "server.scheduler"

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float, ttft_factor: float):
        self.client, self.period, self.timeout, self.ttft_factor = client, period, timeout, ttft_factor
        self.last: Samples | None = None
        self.baseline: dict[str, float] = {}

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/metrics", timeout=self.timeout)
        except httpx.HTTPError:
            self.last = None
            return Result.degraded(UNREACHABLE)
        if r.status_code != 200:
            return Result.failed(f"/metrics answered {r.status_code}")
        now = model_samples(r.text)
        prev, self.last = self.last, now
        problems, values = [], {}
        for model in sorted({m for name, m in now if name == "appliance_queue_depth"}):
            depth = now[("appliance_queue_depth", model)]
            steps = ("appliance_engine_steps_total", model)
            running = now.get(("appliance_running_sequences", model), 0)
            age = now.get(("appliance_scheduler_heartbeat_age_seconds", model), 0)
            values[model] = {"queue": depth, "running": running, "heartbeat_age_s": age}
            if prev is not None and (depth > 0 or running > 0) and now.get(steps, 0) == prev.get(steps, 0):
                problems.append(f"scheduler of {model} is stuck: {int(depth)} waiting, {int(running)} running, "
                                f"no engine step in {self.period:g} s")
            ttft = self._window_mean(prev, now, model)
            if ttft is not None:
                base = self.baseline.get(model)
                if base is not None and ttft > self.ttft_factor * base and ttft > 1.0:
                    problems.append(f"time to first token of {model} is {ttft:.2f} s, {ttft / base:.0f}x its usual "
                                    f"{base:.2f} s: the box is overloaded")
                self.baseline[model] = ttft if base is None else 0.9 * base + 0.1 * ttft
        if problems:
            return Result.degraded("; ".join(problems), **values)
        return Result.ok("scheduler making progress", **values)

    @staticmethod
    def _window_mean(prev: Samples | None, now: Samples, model: str) -> float | None:
        if prev is None:
            return None
        s = ("appliance_time_to_first_token_seconds_sum", model)
        c = ("appliance_time_to_first_token_seconds_count", model)
        n = now.get(c, 0) - prev.get(c, 0)
        return (now.get(s, 0) - prev.get(s, 0)) / n if n > 0 else None
