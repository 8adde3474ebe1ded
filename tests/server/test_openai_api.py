"""The OpenAI-compatible API through the official openai SDK, against a real server process."""

from __future__ import annotations

import asyncio
import base64
import json
import math
from collections import Counter

import httpx
import jsonschema
import openai
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


def test_any_int64_seed_is_accepted(client):
    """OpenAI takes any 64-bit seed; a negative one once killed the scheduler thread and hung every request."""
    quick = client.with_options(timeout=30)
    for seed in (-1, -(2**63), 2**63 - 1):
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


# -- structured output --------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"type": "string", "enum": ["engineer", "teacher", "doctor"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 16}, "minItems": 1, "maxItems": 3},
        "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                                     "country": {"type": "string", "maxLength": 20}},
                    "required": ["city", "country"]},
    },
    "required": ["name", "age", "role", "skills", "address"],
}
PERSON_FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
PERSON_ASK = [{"role": "user", "content": "Describe Anna, a 34 year old engineer from Oslo, as JSON."}]


def test_json_schema_output_parses_and_validates_streamed_and_not(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=PERSON_ASK, temperature=0, max_tokens=150,
                                       response_format=PERSON_FORMAT)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    value = json.loads(r.choices[0].message.content)
    jsonschema.validate(value, PERSON)
    assert set(value) == set(PERSON["properties"]) and set(value["address"]) == {"city", "country"}
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=PERSON_ASK, temperature=0,
                                                 max_tokens=150, response_format=PERSON_FORMAT, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(streamed), PERSON)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_json_object_on_completions_and_sampled_output_still_validates(client):
    r = client.completions.create(model=CHAT_MODEL, prompt="A JSON object describing a cat:", max_tokens=60,
                                  temperature=0, extra_body={"response_format": {"type": "json_object"}})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].text), dict)
    else:
        assert r.choices[0].text.startswith("{")
    for seed in (1, 2, 3):  # sampled at temperature 1.2 the mask still holds
        s = client.chat.completions.create(model=CHAT_MODEL, messages=PERSON_ASK, temperature=1.2, seed=seed,
                                           max_tokens=200, response_format=PERSON_FORMAT)
        if s.choices[0].finish_reason == "stop":
            jsonschema.validate(json.loads(s.choices[0].message.content), PERSON)


def test_invalid_schema_is_a_400_naming_the_problem(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {
        "a": {"type": "string", "pattern": "(unclosed"}}}}}
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=CHAT_MODEL, messages=PERSON_ASK, max_tokens=5, response_format=bad)
    assert ei.value.param == "response_format" and "regex" in ei.value.message
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=CHAT_MODEL, messages=PERSON_ASK, max_tokens=5,
                                       response_format={"type": "json_schema"})
    assert "json_schema" in ei.value.message


# -- tool calls ---------------------------------------------------------------------------------------

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"]}}}
WEATHER_ASK = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def test_tool_call_round_trip(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=WEATHER_ASK, tools=[WEATHER_TOOL],
                                       tool_choice="required", temperature=0, max_tokens=60)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, WEATHER_TOOL["function"]["parameters"])
    followup = [*WEATHER_ASK, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 18, "sky": "clear"})}]
    final = client.chat.completions.create(model=CHAT_MODEL, messages=followup, tools=[WEATHER_TOOL],
                                           tool_choice="none", temperature=0, max_tokens=40)
    assert final.choices[0].message.content and final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason in ("stop", "length")


def test_tool_calls_streamed_match_the_non_streamed_call(client):
    named = {"type": "function", "function": {"name": "get_weather"}}
    r = client.chat.completions.create(model=CHAT_MODEL, messages=WEATHER_ASK, tools=[WEATHER_TOOL],
                                       tool_choice=named, temperature=0, max_tokens=60)
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=WEATHER_ASK, tools=[WEATHER_TOOL],
                                                 tool_choice=named, temperature=0, max_tokens=60, stream=True))
    calls: dict[int, dict] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            entry = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = tc.id or entry["id"]
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
    assert list(calls) == [0] and calls[0]["id"].startswith("call_")
    assert (calls[0]["name"], calls[0]["arguments"]) == (r.choices[0].message.tool_calls[0].function.name,
                                                         r.choices[0].message.tool_calls[0].function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auto_tool_choice_answers_or_calls_and_both_are_well_formed(client):
    for ask in (WEATHER_ASK, [{"role": "user", "content": "Say hello to me."}]):
        r = client.chat.completions.create(model=CHAT_MODEL, messages=ask, tools=[WEATHER_TOOL], temperature=0,
                                           max_tokens=80)
        m = r.choices[0].message
        if m.tool_calls:
            assert r.choices[0].finish_reason == "tool_calls"
            jsonschema.validate(json.loads(m.tool_calls[0].function.arguments), WEATHER_TOOL["function"]["parameters"])
        elif r.choices[0].finish_reason == "stop":
            assert m.content and not m.content.lstrip().startswith('{"response"')


def test_named_tool_choice_without_tools_is_400(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=CHAT_MODEL, messages=WEATHER_ASK, max_tokens=5,
                                       tool_choice={"type": "function", "function": {"name": "get_weather"}})
    assert ei.value.param == "tool_choice"


# -- sampling controls ---------------------------------------------------------------------------------

def test_n_choices_with_a_seed_are_reproducible_and_distinct(client):
    ask = [{"role": "user", "content": "Write a poem."}]
    _warm(client, ask)

    def run():
        return client.chat.completions.create(model=CHAT_MODEL, messages=ask, temperature=1.0, seed=42, n=3,
                                              max_tokens=12)

    a, b = run(), run()
    assert [c.index for c in a.choices] == [0, 1, 2]
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len({c.message.content for c in a.choices}) > 1
    one = client.chat.completions.create(model=CHAT_MODEL, messages=ask, temperature=1.0, seed=42, max_tokens=12)
    assert a.usage.prompt_tokens == one.usage.prompt_tokens  # the prompt counted once
    assert one.choices[0].message.content == a.choices[0].message.content  # choice 0 is what n=1 gives
    assert 3 <= a.usage.completion_tokens <= 36
    streamed: dict[int, str] = {}
    for c in client.chat.completions.create(model=CHAT_MODEL, messages=ask, temperature=1.0, seed=42, n=3,
                                            max_tokens=12, stream=True):
        for ch in c.choices:
            streamed[ch.index] = streamed.get(ch.index, "") + (ch.delta.content or "")
    assert [streamed[i] for i in range(3)] == [c.message.content for c in a.choices]


def test_logprobs_are_probabilities_streamed_and_not(client):
    r = client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0, max_tokens=12,
                                       logprobs=True, top_logprobs=5)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        tops = [x.logprob for x in t.top_logprobs]
        assert len(tops) == 5 and tops == sorted(tops, reverse=True)
        assert t.logprob <= 0 and t.logprob == tops[0]  # greedy takes the most likely token
        assert sum(math.exp(x) for x in tops) <= 1 + 1e-6
        assert bytes(t.bytes).decode() == t.token
    chunks = list(client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, temperature=0,
                                                 max_tokens=12, logprobs=True, top_logprobs=5, stream=True))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 6)) for t in streamed] == [(t.token, round(t.logprob, 6)) for t in content]


def test_logprobs_under_a_mask_sum_to_one(client):
    """With an enum schema only a few tokens can follow the opening quote: the top 20 hold the whole distribution."""
    colour = {"type": "json_schema", "json_schema": {"name": "c", "schema": {"enum": ["red", "green", "blue"]}}}
    r = client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "Name a colour."}],
                                       temperature=0, max_tokens=10, response_format=colour, logprobs=True,
                                       top_logprobs=20)
    assert json.loads(r.choices[0].message.content) in ("red", "green", "blue")
    for t in r.choices[0].logprobs.content:
        assert len(t.top_logprobs) < 20
        assert sum(math.exp(x.logprob) for x in t.top_logprobs) == pytest.approx(1.0, abs=1e-6)


def test_completions_logprobs_and_echo(client):
    r = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0, max_tokens=4,
                                  logprobs=3)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and len(lp.tokens) == 4
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(4)]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert top[token] == logprob == max(top.values()) and sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
    e = client.completions.create(model=CHAT_MODEL, prompt=["The capital of France is", "One, two,"],
                                  temperature=0, max_tokens=4, echo=True)
    assert [c.index for c in e.choices] == [0, 1]
    assert e.choices[0].text == "The capital of France is" + r.choices[0].text
    assert e.choices[1].text.startswith("One, two,")


def test_logit_bias_bans_and_forces_a_token(client, server, default_store):
    plain = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0,
                                      max_tokens=6, logprobs=0)
    first = plain.choices[0].logprobs.tokens[0]
    token_id = _token_id(server, default_store, first)
    banned = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0,
                                       max_tokens=6, logprobs=0, logit_bias={str(token_id): -100})
    assert first not in banned.choices[0].logprobs.tokens and banned.choices[0].text != plain.choices[0].text
    banana = _token_id(server, default_store, " banana")
    forced = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0.8, seed=1,
                                       max_tokens=4, logit_bias={str(banana): 100})
    assert forced.choices[0].text == " banana" * 4
    for bad in ({"x": 1}, {"99999999": 1}, {str(banana): 150}):
        with pytest.raises(openai.BadRequestError) as ei:
            client.completions.create(model=CHAT_MODEL, prompt="hi", max_tokens=2, logit_bias=bad)
        assert ei.value.param == "logit_bias"


def _token_id(server, store, text: str) -> int:
    """The id of a one-token text, read back through token-id input: a prompt of that id echoes the text."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(store / CHAT_MODEL / "tokenizer.json"))
    [token] = tok.encode(text, add_special_tokens=False).ids
    r = httpx.post(f"{server.url}/v1/completions", headers=server.headers(), timeout=60, json={
        "model": CHAT_MODEL, "prompt": [token], "max_tokens": 1, "echo": True, "temperature": 0})
    assert r.json()["choices"][0]["text"].startswith(text)
    return token


def test_frequency_penalty_reduces_repetition(client):
    prompt = "1, 1, 1, 1, 1, 1, 1, 1,"

    def most_repeated(**kw) -> int:
        r = client.completions.create(model=CHAT_MODEL, prompt=prompt, temperature=0, max_tokens=16, logprobs=0, **kw)
        return max(Counter(r.choices[0].logprobs.tokens).values())

    assert most_repeated(frequency_penalty=1.5, presence_penalty=1.0) < most_repeated()


def test_token_id_prompts_and_embeddings(client, default_store):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_store / CHAT_MODEL / "tokenizer.json"))
    ids = tok.encode("The capital of France is", add_special_tokens=False).ids
    by_ids = client.completions.create(model=CHAT_MODEL, prompt=ids, temperature=0, max_tokens=5)
    by_text = client.completions.create(model=CHAT_MODEL, prompt="The capital of France is", temperature=0,
                                        max_tokens=5)
    assert by_ids.choices[0].text == by_text.choices[0].text and by_ids.usage.prompt_tokens == len(ids)
    etok = Tokenizer.from_file(str(default_store / EMBED_MODEL / "tokenizer.json"))
    etok.no_padding()  # the stored tokenizer pads to 128, which a client would not send
    texts = ["the quick brown fox", "a lazy dog"]
    token_lists = [etok.encode(t, add_special_tokens=False).ids for t in texts]
    a = client.embeddings.create(model=EMBED_MODEL, input=token_lists, encoding_format="float")
    b = client.embeddings.create(model=EMBED_MODEL, input=texts, encoding_format="float")
    for x, y in zip(a.data, b.data):
        assert np.dot(_vector(x), _vector(y)) > 0.9999
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=EMBED_MODEL, input=[[1, 10**7]], encoding_format="float")
    assert ei.value.param == "input"


def test_sixteen_concurrent_constrained_and_free_requests_answer_as_each_alone(server):
    bodies = []
    for i, p in enumerate(["Name a fruit.", "Describe Bob, a doctor from Rome, as JSON.", "Name a planet.",
                           "Describe Kim, a 29 year old teacher, as JSON.", "What do bees make?",
                           "Describe Lee, an engineer from Seoul, as JSON.", "Say hello in French.",
                           "Describe Ana, a teacher from Lima, as JSON."] * 2):
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"{p} ({i // 8})"}], "temperature": 0,
                "max_tokens": 40}
        if "JSON" in p:
            body |= {"response_format": PERSON_FORMAT, "max_tokens": 120}
        bodies.append(body)

    async def ask(c: httpx.AsyncClient, body: dict) -> str:
        r = await c.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["message"]["content"]

    async def run():
        async with httpx.AsyncClient(base_url=server.url, headers=server.headers(), timeout=600) as c:
            alone = [await ask(c, b) for b in bodies]
            together = await asyncio.gather(*(ask(c, b) for b in bodies))
            return alone, list(together)

    alone, together = asyncio.run(run())
    assert together == alone
    for body, text in zip(bodies, alone):
        if "response_format" in body and text.endswith("}"):
            jsonschema.validate(json.loads(text), PERSON)


def test_openai_style_validation(client):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, max_tokens=2,
                                       stream_options={"include_usage": True})
    assert ei.value.param == "stream_options"
    for seed in (2**63, -(2**63) - 1):
        with pytest.raises(openai.BadRequestError) as ei:
            client.chat.completions.create(model=CHAT_MODEL, messages=GREEDY_MESSAGES, max_tokens=2, seed=seed)
        assert ei.value.param == "seed"
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "wizard", "content": "hi"}], max_tokens=2)
    assert ei.value.param.startswith("messages[0]")
