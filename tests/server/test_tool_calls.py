"""The generic tool-call format: what the model is told, what it may say (the grammar), and how it is read back."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest

import tiny_vocab
from appliance.engine.sampling import Sampler, SamplingParams
from appliance.server.protocol import ChatMessage, NamedToolChoice, ToolDefinition
from appliance.server.tool_calls import ToolPlan

WEATHER = ToolDefinition.model_validate({"type": "function", "function": {
    "name": "weather", "description": "today's weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 3},
                                                    "unit": {"enum": ["c", "f"]}}, "required": ["city", "unit"]}}})
CLOCK = ToolDefinition.model_validate({"type": "function", "function": {"name": "clock"}})


def draws(plan: ToolPlan, n: int = 20) -> list[dict]:
    """Random answers under the plan's grammar (uniform over what the mask allows)."""
    grammar = tiny_vocab.grammars().json_schema(plan.schema())
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        c, s, ids = grammar.start(), Sampler(SamplingParams(temperature=1.0, seed=int(rng.integers(1 << 30)))), []
        while True:
            c.compute()
            t = s.choose(np.zeros(tiny_vocab.SIZE, np.float32), c.allowed()).token
            assert c.accept(t)
            if t == tiny_vocab.EOS:
                break
            ids.append(t)
            if c.finished:
                break
            assert len(ids) < 5000, "no end"
        out.append(json.loads(tiny_vocab.decode(ids)))
    return out


def test_auto_allows_a_valid_call_or_an_answer_and_nothing_else():
    plan = ToolPlan([WEATHER, CLOCK], "auto")
    kinds = set()
    for answer in draws(plan, 30):
        jsonschema.validate(answer, plan.schema())
        if "tool_call" in answer:
            call = answer["tool_call"]
            if call["name"] == "weather":
                jsonschema.validate(call["arguments"], WEATHER.function.parameters)
            else:
                assert call == {"name": "clock", "arguments": {}}
            kinds.add(call["name"])
        else:
            assert set(answer) == {"response"}
            kinds.add("response")
    assert kinds == {"weather", "clock", "response"}


def test_required_and_named_choices_always_call():
    assert all("tool_call" in a for a in draws(ToolPlan([WEATHER, CLOCK], "required")))
    named = ToolPlan([WEATHER, CLOCK], NamedToolChoice.model_validate({"type": "function",
                                                                      "function": {"name": "clock"}}))
    assert all(a == {"tool_call": {"name": "clock", "arguments": {}}} for a in draws(named, 5))
    assert "weather" not in named.instructions()


def test_parallel_calls_come_as_a_list():
    for answer in draws(ToolPlan([WEATHER], "required", parallel=True), 10):
        assert len(answer["tool_calls"]) >= 1
        for call in answer["tool_calls"]:
            jsonschema.validate(call["arguments"], WEATHER.function.parameters)


def test_the_conversation_carries_tools_calls_and_results_in_the_same_format():
    plan = ToolPlan([WEATHER], "auto")
    history = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Weather in Oslo?"),
               ChatMessage.model_validate({"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Osl", "unit": "c"}'}}]}),
               ChatMessage(role="tool", tool_call_id="call_1", content="-3 and snow"),
               ChatMessage(role="assistant", content="Cold.")]
    out = plan.messages(history)
    assert [m["role"] for m in out] == ["system", "user", "assistant", "user", "assistant"]
    assert out[0]["content"].startswith("Be brief.\n\nYou can call these tools") and '"weather"' in out[0]["content"]
    assert json.loads(out[2]["content"]) == {"tool_call": {"name": "weather", "arguments": {"city": "Osl", "unit": "c"}}}
    assert json.loads(out[3]["content"]) == {"tool_response": {"name": "weather", "tool_call_id": "call_1",
                                                               "content": "-3 and snow"}}
    assert json.loads(out[4]["content"]) == {"response": "Cold."}
    assert ToolPlan([WEATHER], "auto").messages([history[1]])[0]["role"] == "system"  # instructions added


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('{"tool_call": {"name": "weather", "arguments": {"city": "Osl", "unit": "c"}}}', None,
     [("weather", {"city": "Osl", "unit": "c"})]),
    ('{"tool_calls": [{"name": "clock", "arguments": {}}, {"name": "weather", "arguments": {"city": "a", '
     '"unit": "f"}}]}', None, [("clock", {}), ("weather", {"city": "a", "unit": "f"})]),
    ('{"response": "It is sunny."}', "It is sunny.", []),
    ('{"tool_call": {"name": "weath', '{"tool_call": {"name": "weath', []),  # cut by max_tokens: stays text
])
def test_parse(text, content, calls):
    got_content, got_calls = ToolPlan([WEATHER, CLOCK], "auto").parse(text)
    assert got_content == content
    assert [(c.function.name, json.loads(c.function.arguments)) for c in got_calls] == calls
    assert len({c.id for c in got_calls}) == len(got_calls) and all(c.id.startswith("call_") for c in got_calls)


def test_a_turn_without_tools_hears_the_past_exchange_in_words():
    history = [ChatMessage(role="user", content="Weather in Oslo?"),
               ChatMessage.model_validate({"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Osl", "unit": "c"}'}}]}),
               ChatMessage(role="tool", tool_call_id="call_1", content="-3 and snow")]
    out = ToolPlan.in_words(history)
    assert out == [{"role": "user", "content": "Weather in Oslo?"},
                   {"role": "assistant", "content": 'Calling weather with {"city": "Osl", "unit": "c"}'},
                   {"role": "user", "content": "weather returned: -3 and snow"}]
