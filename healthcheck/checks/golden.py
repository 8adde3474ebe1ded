"""Each model's golden self-test through the public API, compared with what the factory recorded."""

from __future__ import annotations

import base64

import httpx

from appliance.engine.diffusion.png import decode_png
from appliance.engine.diffusion.thumbnail import max_difference, thumbnail
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
        if self.manifest.task == "text-to-image":
            return await self._probe_image()
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


    async def _probe_image(self) -> Result:
        g, mid = self.manifest.golden, self.manifest.model_id
        body = {"model": mid, "prompt": g.image_prompt, "size": g.image_size, "seed": g.image_seed,
                "steps": g.image_steps, "n": 1, "response_format": "b64_json"}
        r = await self.client.post("/v1/images/generations", json=body, timeout=self.timeout)
        if r.status_code == 503:
            return Result.degraded("server not ready (see server.readiness)")
        if r.status_code != 200:
            return Result.failed(f"golden request for {mid} answered {r.status_code}: {_message(r)}")
        try:
            pixels = decode_png(base64.b64decode(r.json()["data"][0]["b64_json"]))
        except Exception as exc:  # whatever came back, it is not the PNG the factory's test produced
            return Result.failed(f"model {mid} golden image is not a readable PNG ({type(exc).__name__}): "
                                 "reinstall the store")
        w, _, h = g.image_size.partition("x")
        if pixels.shape[:2] != (int(h), int(w)):
            return Result.failed(f"model {mid} golden image is {pixels.shape[1]}x{pixels.shape[0]}, asked for "
                                 f"{g.image_size}")
        diff = max_difference(thumbnail(pixels), g.expected_thumbnail)
        if diff > g.max_thumbnail_diff:
            return Result.failed(f"model {mid} golden image drifted from the factory's ({diff:.1f} levels > "
                                 f"{g.max_thumbnail_diff}): the engine was changed or the hardware computes wrongly; "
                                 "reinstall the store", difference=round(diff, 2))
        return Result.ok("golden image matches the factory's", difference=round(diff, 2))


def _message(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except Exception:
        return r.text[:100]
