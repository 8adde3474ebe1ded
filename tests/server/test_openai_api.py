"""The OpenAI-compatible API through the official openai SDK, against a real server process."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest

from conftest import CHAT_MODEL, EMBED_MODEL, create_key, needs_avx512
from wait import wait_until

pytestmark = needs_avx512

GREEDY_MESSAGES = [{"role": "user", "content": "Say hi."}]
GEN_METRIC = "appliance_generated_tokens_total"


def _generated(server) -> float:
    try:
        return server.metric(GEN_METRIC, model=CHAT_MODEL)
    except KeyError:
        return 0.0


def _warm(client, messages) -> None:
    """Leave this prompt in the KV cache, so the next requests for it all reuse the same prefix.

    A prompt whose last token alone is prefilled (a prefix-cache hit) gets
    slightly different logits from the int4 engine than one prefilled in a
    longer chunk, which can flip a greedy near-tie; so greedy answers are
    compared only between requests that met the same cache state.
    """
    client.chat.completions.create(model=CHAT_MODEL, messages=messages, temperature=0, max_tokens=1)


def _reference(client, **kw):
    """The greedy (temperature 0) non-streamed answer to GREEDY_MESSAGES, with a warm cache."""
    _warm(client, GREEDY_MESSAGES)
    r = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=24, **kw)
    assert len(r.choices[0].message.content.split()) >= 4, r.choices[0].message.content
    return r


def test_models_lists_both(client):
    ids = {m.id for m in client.models.list().data}
    assert {CHAT_MODEL, EMBED_MODEL} <= ids
    page = client.models.list()
    assert all(m.object == "model" and m.owned_by for m in page.data)


def test_chat_greedy_usage_is_exact(client, server):
    before = _generated(server)
    r = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=24)
    after = _generated(server)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == CHAT_MODEL and r.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0
    assert r.usage.completion_tokens == after - before
    assert 0 < r.usage.completion_tokens <= 24
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_max_tokens_gives_length(client, server):
    before = _generated(server)
    r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Name three colors."}],
                                       temperature=0, max_tokens=5)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    assert _generated(server) - before == 5
    assert r.choices[0].message.content


def test_chat_max_completion_tokens_honoured(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Name three colors."}],
                                       temperature=0, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3


def test_chat_stream_matches_non_streamed(client):
    greedy = _reference(client)
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0,
                                            max_tokens=24, stream=True)
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" and c.model == CHAT_MODEL for c in chunks)
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == greedy.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == greedy.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])
    assert all(c.usage is None for c in chunks)


def test_chat_stream_include_usage(client):
    greedy = _reference(client)
    stream = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0,
                                            max_tokens=24, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == greedy.usage.prompt_tokens
    assert last.usage.completion_tokens == greedy.usage.completion_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == greedy.choices[0].finish_reason
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == greedy.choices[0].message.content


def test_stop_string(client):
    greedy = _reference(client)
    full = greedy.choices[0].message.content
    stop = full.split()[1]
    r = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=24,
                                       stop=stop)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[: full.index(stop)]
    assert stop not in r.choices[0].message.content


def test_stop_list(client):
    greedy = _reference(client)
    full = greedy.choices[0].message.content
    words = full.split()
    stops = ["@@never-appears@@", words[2], words[3]]
    r = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=24,
                                       stop=stops)
    cut = min(full.index(s) for s in stops if s in full)
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[:cut]


def test_stop_string_streamed(client):
    greedy = _reference(client)
    full = greedy.choices[0].message.content
    stop = full.split()[2]
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0,
                                                 max_tokens=24, stop=[stop], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full[: full.index(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_seed_reproducible(client):
    messages = [{"role": "user", "content": "Write a poem."}]
    _warm(client, messages)

    def sample(seed: int) -> str:
        r = client.chat.completions.create(model=CHAT_MODEL, messages=messages,
                                           temperature=0.9, seed=seed, max_tokens=16)
        return r.choices[0].message.content

    assert sample(1234) == sample(1234)
    assert len({sample(s) for s in (1, 2, 3)}) > 1


def test_any_integer_seed_is_accepted(client):
    """OpenAI takes any integer seed; a negative one once killed the scheduler thread and hung every request."""
    quick = client.with_options(timeout=30)
    for seed in (-1, -(2**63), 2**64 + 5):
        r = quick.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0.9, seed=seed,
                                          max_tokens=2)
        assert r.usage.completion_tokens >= 1
    r = quick.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")


def test_completions(client):
    r = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0)
    assert r.object == "text_completion"
    assert r.choices[0].text
    assert r.choices[0].finish_reason == "length"  # default max_tokens is 16
    assert r.usage.completion_tokens == 16 and r.usage.prompt_tokens > 0
    chunks = list(client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0,
                                            stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == r.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_completions_stream_include_usage(client):
    chunks = list(client.completions.create(model=CHAT_MODEL, prompt="Once upon a time", temperature=0,
                                            max_tokens=4, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    assert chunks[-2].choices[0].finish_reason == "length"


def _vector(item) -> np.ndarray:
    emb = item.embedding
    if isinstance(emb, str):
        return np.frombuffer(base64.b64decode(emb), dtype="<f4")
    return np.asarray(emb, dtype=np.float32)


def test_embeddings_string(client):
    r = client.embeddings.create(model=EMBED_MODEL, input="The quick brown fox", encoding_format="float")
    assert r.model == EMBED_MODEL and len(r.data) == 1 and r.data[0].index == 0
    assert isinstance(r.data[0].embedding, list)
    v = _vector(r.data[0])
    assert v.shape == (384,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-3)
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens


def test_embeddings_list_float_and_base64(client, server):
    texts = ["first sentence", "a rather different second sentence about cats"]
    f = client.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="float")
    assert [d.index for d in f.data] == [0, 1]
    floats = np.stack([_vector(d) for d in f.data])
    assert floats.shape == (2, 384)
    assert np.allclose(np.linalg.norm(floats, axis=1), 1.0, atol=1e-3)
    assert not np.allclose(floats[0], floats[1])
    assert f.usage.prompt_tokens > 0

    # base64 as the wire carries it: little-endian float32
    raw = httpx.post(f"{server.url}/v1/embeddings", headers=server.headers(), timeout=60,
                     json={"model": EMBED_MODEL, "input": texts, "encoding_format": "base64"})
    assert raw.status_code == 200
    decoded = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw.json()["data"]])
    assert decoded.shape == (2, 384)
    assert np.allclose(decoded, floats, atol=1e-5)
    assert raw.json()["usage"]["prompt_tokens"] == f.usage.prompt_tokens

    b = client.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="base64")
    assert np.allclose(np.stack([_vector(d) for d in b.data]), floats, atol=1e-5)


def test_embeddings_dimensions_384_accepted(client):
    r = client.embeddings.create(model=EMBED_MODEL, input="hello", dimensions=384, encoding_format="float")
    assert len(r.data[0].embedding) == 384


def test_usage_endpoint_counts_exactly(server, client):
    key = create_key(server.state_dir, "usage-counter")
    headers = {"Authorization": f"Bearer {key}"}
    wait_until(lambda: httpx.get(f"{server.url}/v1/usage", headers=headers, timeout=10).status_code == 200,
               timeout=30, what="the server to accept the new key", interval=0.2)
    mine = client.with_options(api_key=key)
    r = mine.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=3)
    e = mine.embeddings.create(model=EMBED_MODEL, input="hello there", encoding_format="float")
    u = httpx.get(f"{server.url}/v1/usage", headers=headers, timeout=10).json()
    assert u["name"] == "usage-counter"
    assert u["requests"] == 2
    assert u["prompt_tokens"] == r.usage.prompt_tokens + e.usage.prompt_tokens
    assert u["completion_tokens"] == r.usage.completion_tokens
