"""POST /v1/images/generations on a real server with the real openai client: PNGs of the asked size, seeds that
reproduce, clear 400s, its own queue (chat answers while an image runs), metrics and the golden probe."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from urllib.parse import urlparse

import httpx
import openai
import pytest

from appliance.engine.diffusion.png import decode_png
from appliance.store.manifest import Manifest
from conftest import CHAT_MODEL
from wait import wait_until

IMAGE = "tiny-sd-seeded"


@pytest.fixture(scope="module")
def image_server(server, default_store):
    if not (default_store / IMAGE).is_dir():
        pytest.fail(f"{default_store} has no {IMAGE}: it was built before appliance.toml had an image model; rebuild it")
    return server


def generate(client, **kw):
    args = {"model": IMAGE, "prompt": "a lighthouse on a cliff at dawn", "size": "64x64"}
    args.update(kw)
    return client.images.generate(**args)


def pixels(item):
    return decode_png(base64.b64decode(item.b64_json))


def test_pngs_of_the_asked_size_and_count(image_server, client):
    r = generate(client, size="128x128", n=2, extra_body={"seed": 11, "steps": 4})
    assert len(r.data) == 2 and r.size == "128x128"
    a, b = (pixels(d) for d in r.data)
    assert a.shape == b.shape == (128, 128, 3)
    assert (a != b).any()  # two images of one batch, not one image twice
    assert a.std() > 10  # the seeded model draws noise, and the PNG carries it


def test_a_seed_reproduces_its_images_and_an_unseeded_request_returns_its_seed(image_server, client):
    first = generate(client, extra_body={"seed": 7, "steps": 3})
    again = generate(client, extra_body={"seed": 7, "steps": 3})
    other = generate(client, extra_body={"seed": 8, "steps": 3})
    assert first.data[0].b64_json == again.data[0].b64_json != other.data[0].b64_json
    free = generate(client, extra_body={"steps": 3})
    seed = free.data[0].model_extra["seed"]
    assert generate(client, extra_body={"seed": seed, "steps": 3}).data[0].b64_json == free.data[0].b64_json


def test_model_may_be_left_out_when_the_box_has_one_image_model(image_server):
    r = httpx.post(f"{image_server.url}/v1/images/generations", headers=image_server.headers(), timeout=60,
                   json={"prompt": "a boat", "steps": 2})
    assert r.status_code == 200 and r.json()["size"] == "64x64" and r.json()["output_format"] == "png"


@pytest.mark.parametrize("kw,param,words", [
    ({"size": "512x512"}, "size", ["512x512", "64x64, 128x128"]),
    ({"size": "1024x1792"}, "size", ["64x64, 128x128"]),
    ({"response_format": "url"}, "response_format", ["b64_json"]),
    ({"n": 5}, "n", ["at most 4"]),
    ({"quality": "hd"}, "quality", ["'hd'"]),
    ({"style": "vivid"}, "style", ["not supported"]),
    ({"prompt": "a very long prompt " * 30}, "prompt", ["at most 77"]),
    ({"extra_body": {"steps": 51}}, "steps", ["at most 50"]),
    ({"extra_body": {"seed": -1}}, "seed", []),
])
def test_what_the_box_cannot_do_is_a_clear_400(image_server, client, kw, param, words):
    with pytest.raises(openai.BadRequestError) as err:
        generate(client, **kw)
    body = err.value.body
    assert err.value.status_code == 400 and body["param"] == param and body["type"] == "invalid_request_error"
    for w in words:
        assert w in body["message"], body["message"]


def test_unknown_or_wrong_task_model_is_404_and_no_key_is_401(image_server, client):
    with pytest.raises(openai.NotFoundError, match="not an image model"):
        generate(client, model="dall-e-3")
    with pytest.raises(openai.NotFoundError, match=IMAGE):
        generate(client, model=CHAT_MODEL)
    r = httpx.post(f"{image_server.url}/v1/images/generations", json={"prompt": "x"}, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_models_list_says_the_seeded_model_draws_noise(image_server, client):
    card = next(m for m in client.models.list().data if m.id == IMAGE)
    extra = card.model_extra
    assert extra["task"] == "text-to-image" and extra["context_length"] == 77
    meta = extra["metadata"]
    assert meta["seeded_noise_model"] is True and meta["sizes"] == ["64x64", "128x128"]
    assert "noise" in meta["notice"] and "diffusers-folder" in meta["notice"]
    chat = next(m for m in client.models.list().data if m.id == CHAT_MODEL)
    assert chat.model_extra.get("metadata") is None


def _raw_image_request(url: str, key: str, body: dict) -> socket.socket:
    """Send a request on a bare socket, so the test can walk away from it mid-image."""
    u = urlparse(url)
    data = json.dumps(body).encode()
    sock = socket.create_connection((u.hostname, u.port), timeout=60)
    sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: box\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def test_chat_answers_while_an_image_runs_and_a_client_that_leaves_frees_the_worker(image_server, client):
    running = lambda: image_server.metric("appliance_image_requests_running", model=IMAGE)  # noqa: E731
    steps = lambda: image_server.metric("appliance_image_denoising_steps_total", model=IMAGE)  # noqa: E731
    long_image = {"model": IMAGE, "prompt": "a long one", "size": "128x128", "n": 4, "steps": 50, "seed": 1}
    sock = _raw_image_request(image_server.url, image_server.key, long_image)
    try:
        wait_until(lambda: running() == 1, timeout=60, what="the image to start on its worker")
        before = steps()
        reply = client.chat.completions.create(model=CHAT_MODEL, max_tokens=8, temperature=0,
                                               messages=[{"role": "user", "content": "Say hi."}])
        assert reply.choices[0].message.content
        assert running() == 1  # the chat answered while the image was still being drawn
        assert steps() - before < 50  # ... and before it was done
    finally:
        sock.close()
    wait_until(lambda: running() == 0, timeout=120, what="the abandoned image to stop at its next step")
    assert steps() - before < 50
    assert generate(client, extra_body={"steps": 2}).data  # the worker is free again


def test_metrics_count_images(image_server, client):
    before = image_server.metric("appliance_images_generated_total", model=IMAGE)
    generate(client, n=3, extra_body={"steps": 2})
    assert image_server.metric("appliance_images_generated_total", model=IMAGE) == before + 3


def test_golden_probe_passes_against_the_real_server(image_server, default_store):
    from appliance.health.status import Status
    from healthcheck.checks.golden import GoldenProbe

    manifest = Manifest.model_validate_json((default_store / IMAGE / "manifest.json").read_text())

    async def probe():
        async with httpx.AsyncClient(base_url=image_server.url, headers=image_server.headers()) as c:
            return await GoldenProbe(c, manifest, None, 300, 60).probe()

    result = asyncio.run(probe())
    assert result.status == Status.OK, result.reason
    assert result.values["difference"] <= manifest.golden.max_thumbnail_diff
