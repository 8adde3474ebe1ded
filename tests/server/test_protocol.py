"""The typed protocol: each request becomes sampling parameters in one place and refuses what the box ignores."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from appliance.server.openai_errors import ApiError
from appliance.server.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionStreamChoice,
    CompletionRequest,
    DeltaMessage,
    EmbeddingRequest,
)

MSG = [{"role": "user", "content": "hi"}]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=kw.pop("messages", MSG), **kw)


def test_sampling_parameters_and_defaults():
    p = chat(temperature=0, seed=-1).to_sampling_params()
    assert (p.temperature, p.top_p, p.greedy, p.seed) == (0.0, 1.0, True, (1 << 64) - 1)
    assert chat().to_sampling_params().temperature == 1.0
    assert chat(max_tokens=5).requested_tokens() == (5, "max_tokens")
    assert chat(max_tokens=5, max_completion_tokens=7).requested_tokens() == (7, "max_completion_tokens")


@pytest.mark.parametrize("field,value", [
    ("n", 2), ("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"50256": -100}),
    ("presence_penalty", 0.5), ("frequency_penalty", -1.0), ("tools", [{"type": "function"}]),
    ("tool_choice", "required"), ("functions", [{"name": "f"}]), ("response_format", {"type": "json_object"}),
])
def test_fields_that_change_output_and_are_not_honoured_are_refused(field, value):
    with pytest.raises(ApiError) as ei:
        chat(**{field: value}).to_sampling_params()
    assert ei.value.status == 400 and ei.value.code == "unsupported_value"
    assert ei.value.param == ("tools" if field == "tools" else field)


def test_harmless_values_of_those_fields_pass():
    chat(n=1, logprobs=False, logit_bias={}, tool_choice="none", response_format={"type": "text"},
         presence_penalty=0).to_sampling_params()


def test_messages_that_need_content_and_unknown_fields():
    for role in ("user", "system", "developer"):
        with pytest.raises(ValidationError, match=f"a {role} message needs 'content'"):
            chat(messages=[{"role": role}])
    chat(messages=[*MSG, {"role": "assistant", "content": None}])
    assert chat(foo=1, bar="x").ignored_fields() == ["bar", "foo"]
    with pytest.raises(ApiError, match="at least one message"):
        chat(messages=[]).to_sampling_params()
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        chat(messages=[{"role": "user", "content": "\ud800"}])


def test_completion_and_embedding_inputs():
    assert CompletionRequest(model="m", prompt=["one"]).prompt_text() == "one"
    with pytest.raises(ApiError, match="one prompt per request"):
        CompletionRequest(model="m", prompt=["a", "b"]).prompt_text()
    with pytest.raises(ApiError, match="echo, suffix and best_of"):
        CompletionRequest(model="m", prompt="a", echo=True).to_sampling_params()
    assert EmbeddingRequest(model="e", input="x").texts() == ["x"]
    with pytest.raises(ApiError, match="token-id input"):
        EmbeddingRequest(model="e", input=[1, 2]).texts()
    with pytest.raises(ApiError, match="must not be empty"):
        EmbeddingRequest(model="e", input=["a", ""]).texts()


def test_stream_chunk_shape():
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[
        ChatCompletionStreamChoice(delta=DeltaMessage(content="Hi"))])
    body = json.loads(chunk.model_dump_json())
    assert body["object"] == "chat.completion.chunk"
    assert body["choices"][0] == {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    first = DeltaMessage(role="assistant", content="").model_dump()
    assert first == {"role": "assistant", "content": ""} and DeltaMessage().model_dump() == {}
