"""The server from outside: liveness, readiness, golden inference per model, its scheduler signals."""

from __future__ import annotations

import time

import httpx

from appliance.engine.similarity import cosine_rows
from appliance.health.status import Result
from appliance.store.manifest import Manifest
from healthcheck.checks.base import Check


UNREACHABLE = "server unreachable (see server.liveness)"


class Liveness(Check):
    name = "server.liveness"
    affects_server = True

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float, startup_grace: float):
        self.client, self.period, self.timeout = client, period, timeout
        self.grace_until = time.monotonic() + startup_grace
        self.seen_alive = False

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/healthz", timeout=self.timeout)
        except httpx.ConnectError:
            if not self.seen_alive and time.monotonic() < self.grace_until:
                return Result.degraded("server not listening yet (starting)")
            return Result.failed("server is not listening (process down or restarting)")
        except httpx.TimeoutException:
            return Result.failed(f"server did not answer /healthz within {self.timeout:g} s (hung or overloaded)")
        if r.status_code != 200:
            return Result.failed(f"/healthz answered {r.status_code}")
        self.seen_alive = True
        return Result.ok("alive", latency_ms=round(r.elapsed.total_seconds() * 1000, 1))


class Readiness(Check):
    name = "server.readiness"

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float):
        self.client, self.period, self.timeout = client, period, timeout

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/readyz", timeout=self.timeout)
        except httpx.HTTPError:
            return Result.degraded(UNREACHABLE)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200:
            return Result.ok("engines verified and self-tests passed", models=body.get("models"))
        reason = body.get("reason") or (body.get("error") or {}).get("message") or f"HTTP {r.status_code}"
        if body.get("state") == "loading":
            return Result.degraded(f"server starting: {reason}")
        return Result.failed(f"server not ready: {reason}")


class GoldenProbe(Check):
    """The manifest's self-test through the public API: greedy, compared with what the factory recorded."""

    affects_server = True

    def __init__(self, client: httpx.AsyncClient, manifest: Manifest, expected_text: str | None, period: float,
                 timeout: float):
        self.client, self.manifest, self.expected_text = client, manifest, expected_text
        self.name = f"golden.{manifest.model_id}"
        self.period, self.timeout = period, timeout

    async def probe(self) -> Result:
        try:
            return await self._probe()
        except httpx.HTTPError:
            return Result.degraded(UNREACHABLE)

    async def _probe(self) -> Result:
        g, mid = self.manifest.golden, self.manifest.model_id
        if self.manifest.task == "chat":
            body = {"model": mid, "messages": g.messages, "temperature": 0, "max_tokens": len(g.expected_tokens)}
            r = await self.client.post("/v1/chat/completions", json=body, timeout=self.timeout)
            if r.status_code == 503:
                return Result.degraded("server not ready (see server.readiness)")
            if r.status_code != 200:
                return Result.failed(f"golden request for {mid} answered {r.status_code}: {_message(r)}")
            got = r.json()["choices"][0]["message"]["content"]
            if got != self.expected_text:
                return Result.failed(f"model {mid} answers its golden prompt differently from the factory "
                                     f"({got[:40]!r} vs {self.expected_text[:40]!r}): the engine was changed or the "
                                     "hardware computes wrongly; reinstall the store", got=got[:80])
            return Result.ok("golden answer matches the factory's")
        r = await self.client.post("/v1/embeddings", json={"model": mid, "input": g.input_texts}, timeout=self.timeout)
        if r.status_code == 503:
            return Result.degraded("server not ready (see server.readiness)")
        if r.status_code != 200:
            return Result.failed(f"golden request for {mid} answered {r.status_code}: {_message(r)}")
        cos = float(cosine_rows([d["embedding"] for d in r.json()["data"]], g.expected_embeddings).min())
        if cos < g.min_cosine:
            return Result.failed(f"model {mid} golden embeddings drifted (cosine {cos:.5f} < {g.min_cosine}): "
                                 "reinstall the store", cosine=cos)
        return Result.ok("golden embeddings match", cosine=round(cos, 6))


def _message(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:100]


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text to {'name{labels}': value}, summing nothing: one entry per sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


class SchedulerSignals(Check):
    """Queue stuck (work waiting, no engine steps) or time to first token far above its usual level."""

    name = "server.scheduler"

    def __init__(self, client: httpx.AsyncClient, period: float, timeout: float, ttft_factor: float):
        self.client, self.period, self.timeout, self.ttft_factor = client, period, timeout, ttft_factor
        self.last: dict[str, float] | None = None
        self.baseline: dict[str, float] = {}

    async def probe(self) -> Result:
        try:
            r = await self.client.get("/metrics", timeout=self.timeout)
        except httpx.HTTPError:
            self.last = None
            return Result.degraded(UNREACHABLE)
        if r.status_code != 200:
            return Result.failed(f"/metrics answered {r.status_code}")
        now = parse_metrics(r.text)
        prev, self.last = self.last, now
        problems, values = [], {}
        for key, depth in now.items():
            if not key.startswith("appliance_queue_depth{"):
                continue
            model = key[key.index('"') + 1: key.rindex('"')]
            steps_key = f'appliance_engine_steps_total{{model="{model}"}}'
            running = now.get(f'appliance_running_sequences{{model="{model}"}}', 0)
            age = now.get(f'appliance_scheduler_heartbeat_age_seconds{{model="{model}"}}', 0)
            values[model] = {"queue": depth, "running": running, "heartbeat_age_s": age}
            if prev is not None and (depth > 0 or running > 0) and now.get(steps_key, 0) == prev.get(steps_key, 0):
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
    def _window_mean(prev, now, model) -> float | None:
        if prev is None:
            return None
        s = f'appliance_time_to_first_token_seconds_sum{{model="{model}"}}'
        c = f'appliance_time_to_first_token_seconds_count{{model="{model}"}}'
        n = now.get(c, 0) - prev.get(c, 0)
        return (now.get(s, 0) - prev.get(s, 0)) / n if n > 0 else None


