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


def _image_manifest(expected):
    return types.SimpleNamespace(model_id="img-m", task="text-to-image", golden=types.SimpleNamespace(
        image_prompt="a red apple", image_size="64x32", image_seed=1234, image_steps=4,
        expected_thumbnail=expected, max_thumbnail_diff=2.0))


def _png_response(pixels):
    import base64

    from appliance.engine.diffusion.png import encode_png

    body = {"created": 1, "data": [{"b64_json": base64.b64encode(encode_png(pixels)).decode(), "seed": 1234}]}
    return lambda r: httpx.Response(200, json=body)


def test_image_golden_matches_drifts_or_comes_back_wrong():
    import json

    import numpy as np

    from appliance.engine.diffusion.thumbnail import thumbnail

    pixels = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)  # 64 wide, 32 high
    manifest = _image_manifest(thumbnail(pixels))
    ok, seen = _run(manifest, None, _png_response(pixels))
    assert ok.status == Status.OK, ok.reason
    sent = json.loads(seen[0].read())
    assert seen[0].url.path == "/v1/images/generations"
    assert sent == {"model": "img-m", "prompt": "a red apple", "size": "64x32", "seed": 1234, "steps": 4, "n": 1,
                    "response_format": "b64_json"}
    drifted = pixels.copy()
    drifted[:4, :8] = 0  # one block of the 8x8 grid goes dark
    bad, _ = _run(manifest, None, _png_response(drifted))
    assert bad.status == Status.FAILED and "drifted" in bad.reason and "reinstall" in bad.reason
    wrong_size, _ = _run(manifest, None, _png_response(pixels[:16]))
    assert wrong_size.status == Status.FAILED and "64x16" in wrong_size.reason
    garbage, _ = _run(manifest, None, lambda r: httpx.Response(200, json={"data": [{"b64_json": "bm90IGEgcG5n"}]}))
    assert garbage.status == Status.FAILED and "not a readable PNG" in garbage.reason
    busy, _ = _run(manifest, None, lambda r: httpx.Response(503, json={"error": {"message": "loading"}}))
    assert busy.status == Status.DEGRADED
