"""Continuous batching as a client sees it: same answers in a crowd, freed slots, backpressure."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import CHAT_MODEL, needs_avx512
from wait import wait_until

pytestmark = needs_avx512

PROMPTS = [
    "Name a fruit.", "What is the tallest mountain?", "Say hello in French.", "What colour is the sky?",
    "Count from one to five.", "What is water made of?", "Name a planet.", "What is 3 times 4?",
    "Give me a synonym for happy.", "What do bees make?", "Name an ocean.", "What is the capital of Italy?",
    "Describe a cat in three words.", "What is the opposite of cold?", "Name a musical instrument.",
    "What season comes after winter?",
]


def _body(prompt: str, max_tokens: int = 24, stream: bool = False) -> dict:
    return {"model": CHAT_MODEL, "messages": [{"role": "user", "content": prompt}], "temperature": 0,
            "max_tokens": max_tokens, "stream": stream}


async def _ask(client: httpx.AsyncClient, prompt: str) -> str:
    r = await client.post("/v1/chat/completions", json=_body(prompt))
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def test_sixteen_concurrent_greedy_answers_equal_their_sequential_answers(server):
    async def run() -> tuple[list[str], list[str], float]:
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers(), timeout=300) as c:
            sequential = [await _ask(c, p) for p in PROMPTS]
            steps_before = server.metric("appliance_engine_steps_total", model=CHAT_MODEL)
            concurrent = await asyncio.gather(*(_ask(c, p) for p in PROMPTS))
            steps = server.metric("appliance_engine_steps_total", model=CHAT_MODEL) - steps_before
            return sequential, list(concurrent), steps

    sequential, concurrent, steps = asyncio.run(run())
    for p, a, b in zip(PROMPTS, sequential, concurrent):
        assert a == b, f"{p!r}: alone {a!r} vs in a batch {b!r}"
    assert len(set(sequential)) > 8
    # batched: far fewer engine steps than 16 prompts x 24 tokens run one by one
    assert steps < 16 * 24 / 3


def test_disconnect_mid_stream_frees_the_slot_at_once(server):
    """A client that goes away mid-stream frees its slot, and its sequence generates nothing more.

    "Nothing more" is checked against work the scheduler certainly did after
    the disconnect: a later request's steps would also have decoded a
    sequence left in the batch, so the token counter must grow by exactly
    that request's tokens.
    """
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as c:
        counting = ", ".join(str(i) for i in range(1, 40)) + ","  # greedy goes on counting for a long time
        body = {"model": CHAT_MODEL, "prompt": counting, "max_tokens": 1500, "temperature": 0, "stream": True}
        with c.stream("POST", "/v1/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()  # kept open: leaving this iterator early would close the connection
            seen = 0
            while seen < 5:
                line = next(lines)
                seen += line.startswith("data: ") and '"text"' in line
            assert server.metric("appliance_running_sequences", model=CHAT_MODEL) == 1
        # leaving the block closes the connection mid-stream
        wait_until(lambda: server.metric("appliance_running_sequences", model=CHAT_MODEL) == 0, timeout=30,
                   what="the disconnected stream's sequence to leave the batch")
        assert server.metric("appliance_kv_cache_used_tokens", model=CHAT_MODEL) == 0
        generated = server.metric("appliance_generated_tokens_total", model=CHAT_MODEL)
        after = c.post("/v1/chat/completions", json=_body("Name a colour.", 4))
        assert after.status_code == 200, after.text
        used = after.json()["usage"]["completion_tokens"]
        assert used >= 1
        assert server.metric("appliance_generated_tokens_total", model=CHAT_MODEL) == generated + used


def test_full_queue_answers_429_with_retry_after(default_store, tmp_path):
    from conftest import start_server, stop_server

    s = start_server(default_store, tmp_path / "state", "--max-queue", "1")
    try:
        async def flood() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=s.url, headers=s.headers(), timeout=300) as c:
                return await asyncio.gather(*(c.post("/v1/chat/completions", json=_body(f"Story {i}", 200))
                                              for i in range(24)))

        responses = asyncio.run(flood())
        codes = [r.status_code for r in responses]
        assert 429 in codes and 200 in codes and set(codes) <= {200, 429}
        busy = next(r for r in responses if r.status_code == 429)
        assert int(busy.headers["Retry-After"]) >= 1
        assert busy.json()["error"]["type"] == "rate_limit_error" and "busy" in busy.json()["error"]["message"]
    finally:
        stop_server(s)


def test_prefix_cache_is_reused_for_a_repeated_system_prompt(server):
    system = "You are a careful assistant for a small office. " * 8
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as c:
        before = server.metric("appliance_prefix_cache_reused_tokens_total", model=CHAT_MODEL)
        for q in ("Hi", "Hello there"):
            r = c.post("/v1/chat/completions", json={**_body(q, 4), "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": q}]})
            assert r.status_code == 200
        reused = server.metric("appliance_prefix_cache_reused_tokens_total", model=CHAT_MODEL) - before
        assert reused >= 60


@pytest.mark.parametrize("path", ["/metrics", "/health/monitor"])
def test_metrics_and_the_monitor_view_need_a_key(server, path):
    assert httpx.get(server.url + path).status_code == 401
    assert httpx.get(server.url + path, headers=server.headers()).status_code == 200


def test_prompts_and_completions_never_reach_the_log(server):
    secret = "zebra-marmalade-4711"
    with httpx.Client(base_url=server.url, headers=server.headers(), timeout=60) as c:
        r = c.post("/v1/chat/completions", json=_body(f"Repeat after me: {secret}", 12))
        answer = r.json()["choices"][0]["message"]["content"]
        c.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": secret})
    log = server.log.read_text()
    assert secret not in log and (not answer.strip() or answer not in log)
    assert secret not in server.metrics()
