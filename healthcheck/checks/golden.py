"""Each model's golden self-test through the public API, compared with what the factory recorded."""

from __future__ import annotations

import httpx

from appliance.engine.similarity import cosine_rows
from appliance.health.status import Result
from appliance.store.manifest import Manifest
from healthcheck.checks.base import UNREACHABLE, Check


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
