"""The golden probe: the factory's answer through the public API, or a failure that says to reinstall."""

from __future__ import annotations

import asyncio
import types

import httpx

from appliance.health.status import Status
from healthcheck.checks.golden import GoldenProbe

CHAT = types.SimpleNamespace(model_id="chat-m", task="chat", golden=types.SimpleNamespace(
    messages=[{"role": "user", "content": "capital of France?"}], expected_tokens=[1, 2, 3]))
EMBED = types.SimpleNamespace(model_id="emb-m", task="embeddings", golden=types.SimpleNamespace(
    input_texts=["a", "b"], expected_embeddings=[[1.0, 0.0], [0.0, 1.0]], min_cosine=0.999))


def _run(manifest, expected_text, handler):
    seen = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(record), base_url="http://box")
    return asyncio.run(GoldenProbe(client, manifest, expected_text, 300, 60).probe()), seen


def _chat(content: str):
    return lambda r: httpx.Response(200, json={"choices": [{"message": {"content": content}}]})


def test_chat_answer_matches_or_fails_naming_both():
    ok, seen = _run(CHAT, "Paris", _chat("Paris"))
    assert ok.status == Status.OK
    body = seen[0].read()
    assert b'"temperature":0' in body.replace(b" ", b"") and b'"max_tokens":3' in body.replace(b" ", b"")
    bad, _ = _run(CHAT, "Paris", _chat("Lyon"))
    assert bad.status == Status.FAILED and "'Lyon' vs 'Paris'" in bad.reason and "reinstall" in bad.reason


def test_embeddings_cosine_and_server_states():
    good, _ = _run(EMBED, None, lambda r: httpx.Response(200, json={"data": [{"embedding": [1, 0]},
                                                                              {"embedding": [0, 1]}]}))
    assert good.status == Status.OK
    drift, _ = _run(EMBED, None, lambda r: httpx.Response(200, json={"data": [{"embedding": [1, 1]},
                                                                               {"embedding": [0, 1]}]}))
    assert drift.status == Status.FAILED and "drifted" in drift.reason
    busy, _ = _run(EMBED, None, lambda r: httpx.Response(503, json={"error": {"message": "loading"}}))
    assert busy.status == Status.DEGRADED
    refused, _ = _run(CHAT, "Paris", lambda r: httpx.Response(401, json={"error": {"message": "bad key"}}))
    assert refused.status == Status.FAILED and "401: bad key" in refused.reason
