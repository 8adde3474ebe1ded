"""The typed protocol: each request becomes sampling parameters in one place, validated as OpenAI validates."""

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
    token_ids,
)

MSG = [{"role": "user", "content": "hi"}]


def chat(**kw) -> ChatCompletionRequest:
    return ChatCompletionRequest(model="m", messages=kw.pop("messages", MSG), **kw)


VOCAB = 1000


def test_sampling_parameters_and_defaults():
    p = chat(temperature=0, seed=-1).to_sampling_params(VOCAB)
    assert (p.temperature, p.top_p, p.greedy, p.seed) == (0.0, 1.0, True, (1 << 64) - 1)
    assert chat().to_sampling_params(VOCAB).temperature == 1.0
    assert chat(max_tokens=5).requested_tokens() == (5, "max_tokens")
    assert chat(max_tokens=5, max_completion_tokens=7).requested_tokens() == (7, "max_completion_tokens")
    p = chat(logit_bias={"5": -100, "7": 2.5}, presence_penalty=0.5, frequency_penalty=-1, logprobs=True,
             top_logprobs=3).to_sampling_params(VOCAB)
    assert (p.logit_bias, p.presence_penalty, p.frequency_penalty, p.logprobs) == ({5: -100.0, 7: 2.5}, 0.5, -1.0, 3)
    assert chat(logprobs=True).to_sampling_params(VOCAB).logprobs == 0
    assert chat(logprobs=False).to_sampling_params(VOCAB).logprobs is None
    assert CompletionRequest(model="m", prompt="a", logprobs=2).to_sampling_params(VOCAB).logprobs == 2


@pytest.mark.parametrize(("kw", "param", "words"), [
    ({"logit_bias": {"abc": 1}}, "logit_bias", "not an integer"),
    ({"logit_bias": {str(VOCAB): 1}}, "logit_bias", "not a token id"),
    ({"logit_bias": {"-1": 1}}, "logit_bias", "not a token id"),
    ({"logit_bias": {"3": 101}}, "logit_bias", "between -100 and 100"),
    ({"stream_options": {"include_usage": True}}, "stream_options", "only allowed when 'stream'"),
    ({"top_logprobs": 2}, "top_logprobs", "needs 'logprobs'"),
    ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice", "needs 'tools'"),
    ({"tool_choice": "required"}, "tool_choice", "needs 'tools'"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice", "not in 'tools'"),
    ({"functions": [{"name": "f"}]}, "functions", "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "logprobs": True}, "logprobs", "with tools"),
])
def test_invalid_combinations_are_400_naming_the_parameter(kw, param, words):
    with pytest.raises(ApiError, match=words) as ei:
        chat(**kw).to_sampling_params(VOCAB)
    assert ei.value.status == 400 and ei.value.param == param


@pytest.mark.parametrize(("field", "value"), [("seed", 2**63), ("seed", -(2**63) - 1), ("n", 0), ("n", 17),
                                              ("top_logprobs", 21), ("response_format", {"type": "xml"}),
                                              ("response_format", {"type": "json_schema"})])
def test_out_of_range_values_fail_validation(field, value):
    with pytest.raises(ValidationError, match=field):
        chat(**{field: value})


def test_output_schema_and_tools():
    assert chat().output_schema() is None and chat(response_format={"type": "text"}).output_schema() is None
    assert chat(response_format={"type": "json_object"}).output_schema() == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert chat(response_format=rf).output_schema() == schema
    tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
    assert chat(tools=tools, tool_choice="none").active_tools() is None
    active = chat(tools=tools).active_tools()
    assert active is not None and active[1] == "auto" and active[0][0].function.name == "f"
    with pytest.raises(ApiError, match="response_format with tools") as ei:
        chat(tools=tools, response_format=rf).to_sampling_params(VOCAB)
    assert ei.value.param == "response_format"


def test_harmless_values_of_refused_fields_pass():
    chat(n=1, logprobs=False, logit_bias={}, tool_choice="none", response_format={"type": "text"},
         presence_penalty=0).to_sampling_params(VOCAB)


def test_messages_that_need_content_and_unknown_fields():
    for role in ("user", "system", "developer"):
        with pytest.raises(ValidationError, match=f"a {role} message needs 'content'"):
            chat(messages=[{"role": role}])
    chat(messages=[*MSG, {"role": "assistant", "content": None}])
    assert chat(foo=1, bar="x").ignored_fields() == ["bar", "foo"]
    with pytest.raises(ApiError, match="at least one message"):
        chat(messages=[]).to_sampling_params(VOCAB)
    with pytest.raises(ValidationError, match="lone UTF-16 surrogate"):
        chat(messages=[{"role": "user", "content": "\ud800"}])


def test_completion_and_embedding_inputs():
    assert CompletionRequest(model="m", prompt=["one"]).prompts() == ["one"]
    assert CompletionRequest(model="m", prompt=["a", "b"]).prompts() == ["a", "b"]
    assert CompletionRequest(model="m", prompt=[1, 2]).prompts() == [[1, 2]]
    assert CompletionRequest(model="m", prompt=[[1, 2], [3]]).prompts() == [[1, 2], [3]]
    for empty in ("", [], [""], [[]]):
        with pytest.raises(ApiError, match="must not be empty"):
            CompletionRequest(model="m", prompt=empty).prompts()
    with pytest.raises(ApiError, match="more than 64"):
        CompletionRequest(model="m", prompt=["x"] * 5, n=16).prompts()
    with pytest.raises(ApiError, match="echo with logprobs") as ei:
        CompletionRequest(model="m", prompt="a", echo=True, logprobs=1).to_sampling_params(VOCAB)
    assert ei.value.param == "echo"
    with pytest.raises(ApiError, match="suffix"):
        CompletionRequest(model="m", prompt="a", suffix="z").to_sampling_params(VOCAB)
    with pytest.raises(ApiError, match="best_of"):
        CompletionRequest(model="m", prompt="a", best_of=3).to_sampling_params(VOCAB)
    assert EmbeddingRequest(model="e", input="x").inputs() == ["x"]
    assert EmbeddingRequest(model="e", input=[1, 2]).inputs() == [[1, 2]]
    assert EmbeddingRequest(model="e", input=[[1], [2, 3]]).inputs() == [[1], [2, 3]]
    with pytest.raises(ApiError, match="must not be empty"):
        EmbeddingRequest(model="e", input=["a", ""]).inputs()
    with pytest.raises(ApiError, match="outside this model's vocabulary") as ei:
        token_ids([1, VOCAB], VOCAB, "input")
    assert ei.value.param == "input"


def test_tool_messages_need_their_call_id():
    with pytest.raises(ValidationError, match="tool_call_id"):
        chat(messages=[*MSG, {"role": "tool", "content": "42"}])
    with pytest.raises(ValidationError, match="only assistant"):
        chat(messages=[{"role": "user", "content": "x", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}])
    chat(messages=[*MSG, {"role": "assistant", "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "42"}])


def test_stream_chunk_shape():
    chunk = ChatCompletionChunk(id="c", created=1, model="m", choices=[
        ChatCompletionStreamChoice(delta=DeltaMessage(content="Hi"))])
    body = json.loads(chunk.model_dump_json())
    assert body["object"] == "chat.completion.chunk"
    assert body["choices"][0] == {"index": 0, "delta": {"content": "Hi"}, "logprobs": None, "finish_reason": None}
    first = DeltaMessage(role="assistant", content="").model_dump()
    assert first == {"role": "assistant", "content": ""} and DeltaMessage().model_dump() == {}
