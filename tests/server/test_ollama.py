"""Ollama's API through the official ollama Python client, against a real server process (bearer key required)."""

from __future__ import annotations

import json

import httpx
import jsonschema
import numpy as np
import ollama
import pytest

from conftest import CHAT_MODEL, EMBED_MODEL, needs_avx512

pytestmark = needs_avx512

SAY_HI = [{"role": "user", "content": "Say hi."}]
GREEDY = {"temperature": 0, "num_predict": 16}


@pytest.fixture(scope="module")
def oc(server):
    return ollama.Client(host=server.url, headers={"Authorization": f"Bearer {server.key}"}, timeout=120)


def test_tags_version_and_show(oc, server):
    names = {m.model for m in oc.list().models}
    assert names == {f"{CHAT_MODEL}:latest", f"{EMBED_MODEL}:latest"}
    chat = next(m for m in oc.list().models if m.model.startswith(CHAT_MODEL))
    assert chat.size > 10**7 and len(chat.digest) == 64 and chat.details.quantization_level == "int4"
    version = httpx.get(f"{server.url}/api/version", headers=server.headers(), timeout=10).json()
    assert version["version"].count(".") == 2
    shown = oc.show(CHAT_MODEL)
    assert "completion" in shown.capabilities and "im_start" in shown.template
    assert oc.show(f"{EMBED_MODEL}:latest").capabilities == ["embedding"]


def test_chat_not_streamed_equals_streamed_and_the_openai_route(oc, client):
    r = oc.chat(model=CHAT_MODEL, messages=SAY_HI, options=GREEDY, stream=False)
    assert r.done and r.done_reason in ("stop", "length") and r.message.role == "assistant" and r.message.content
    assert r.prompt_eval_count > 0 and 0 < r.eval_count <= 17 and r.total_duration > 0
    parts = list(oc.chat(model=f"{CHAT_MODEL}:latest", messages=SAY_HI, options=GREEDY, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done and parts[-1].done_reason == r.done_reason
    assert "".join(p.message.content or "" for p in parts) == r.message.content
    same = client.chat.completions.create(model=CHAT_MODEL, messages=SAY_HI, temperature=0, max_tokens=16)
    assert same.choices[0].message.content == r.message.content  # one scheduler, one engine behind both APIs


def test_generate_raw_and_templated_with_context(oc):
    g = oc.generate(model=CHAT_MODEL, prompt="The capital of France is", raw=True,
                    options={"temperature": 0, "num_predict": 4})
    assert g.done and g.response.strip() and g.eval_count == 4 and g.done_reason == "length"
    assert len(g.context) == g.prompt_eval_count + 4
    parts = list(oc.generate(model=CHAT_MODEL, prompt="Say hi.", options=GREEDY, stream=True))
    assert parts[-1].done and "".join(p.response for p in parts).strip()
    loaded = oc.generate(model=CHAT_MODEL, prompt="")
    assert loaded.done and loaded.done_reason == "load"


def test_format_json_schema_and_tools(oc):
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                               "age": {"type": "integer"}}, "required": ["name", "age"]}
    r = oc.chat(model=CHAT_MODEL, messages=[{"role": "user", "content": "Describe Ann, 30, as JSON."}],
                format=schema, options={"temperature": 0, "num_predict": 60})
    jsonschema.validate(json.loads(r.message.content), schema)

    def get_weather(city: str) -> str:
        """Get the current weather in a city.

        Args:
          city: the city's name
        """
        return "sunny"

    ask = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    r = oc.chat(model=CHAT_MODEL, messages=ask, tools=[get_weather], options={"temperature": 0, "num_predict": 60})
    if r.message.tool_calls:
        call = r.message.tool_calls[0]
        assert call.function.name == "get_weather" and isinstance(call.function.arguments["city"], str)
        final = oc.chat(model=CHAT_MODEL, options=GREEDY, messages=[
            *ask, r.message, {"role": "tool", "tool_name": "get_weather", "content": "sunny, 21 C"}])
        assert final.done and final.message.content
    else:
        assert r.message.content


def test_embed_and_the_older_embeddings_route(oc, client):
    e = oc.embed(model=EMBED_MODEL, input=["hello there", "a rather different sentence about cats"])
    vectors = np.array(e.embeddings, np.float32)
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    same = client.embeddings.create(model=EMBED_MODEL, input="hello there", encoding_format="float")
    assert np.dot(vectors[0], np.array(same.data[0].embedding, np.float32)) > 0.9999
    one = oc.embed(model=f"{EMBED_MODEL}:latest", input="hello there")
    assert np.allclose(one.embeddings[0], vectors[0], atol=1e-5)
    legacy = oc.embeddings(model=EMBED_MODEL, prompt="hello there")
    assert np.allclose(legacy.embedding, vectors[0], atol=1e-5)
    with pytest.raises(ollama.ResponseError) as ei:
        oc.embed(model=EMBED_MODEL, input=["word " * 400], truncate=False)
    assert ei.value.status_code == 400 and "256" in ei.value.error
    assert len(oc.embed(model=EMBED_MODEL, input=["word " * 400]).embeddings[0]) == 384  # truncated, as Ollama does


def test_errors_are_ollama_shaped_and_a_key_is_required(oc, server):
    with pytest.raises(ollama.ResponseError) as ei:
        oc.chat(model="no-such-model", messages=SAY_HI)
    assert ei.value.status_code == 404 and "no-such-model" in ei.value.error
    with pytest.raises(ollama.ResponseError) as ei:
        oc.chat(model=CHAT_MODEL, messages=SAY_HI, options={"mirostat": 2})
    assert ei.value.status_code == 400 and "mirostat" in ei.value.error
    with pytest.raises(ollama.ResponseError) as ei:
        oc.chat(model=CHAT_MODEL, messages=SAY_HI, options={"temperature": "hot"})
    assert ei.value.status_code == 400 and "temperature" in ei.value.error
    assert oc.chat(model=CHAT_MODEL, messages=SAY_HI, options={**GREEDY, "num_ctx": 4096, "repeat_penalty": 1.0}).done
    anonymous = ollama.Client(host=server.url, timeout=30)
    for call in (anonymous.list, lambda: anonymous.chat(model=CHAT_MODEL, messages=SAY_HI),
                 lambda: anonymous.embed(model=EMBED_MODEL, input="x")):
        with pytest.raises(ollama.ResponseError) as ei:
            call()
        assert ei.value.status_code == 401
    r = httpx.post(f"{server.url}/api/chat", headers=server.headers(), timeout=60,
                   json={"model": CHAT_MODEL, "messages": SAY_HI, "options": GREEDY})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert r.headers["content-type"].startswith("application/x-ndjson") and lines[-1]["done"] and len(lines) > 2
