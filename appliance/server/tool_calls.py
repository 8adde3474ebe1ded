"""Tool calls in a generic JSON format, for chat templates that do not know tools (llama.cpp's generic handler).

The tools and the answer format are described in a system message. The
model answers with one JSON object: ``{"tool_call": {"name": ..,
"arguments": {..}}}`` (``{"tool_calls": [..]}`` when parallel calls are
asked for) or ``{"response": ".."}``. A grammar built from each function's
``parameters`` schema makes any other output impossible, so every call
parses and its arguments match its schema; with ``tool_choice`` 'required'
or a named function only a call is allowed. Earlier turns are written back
in the same format, so the model sees its own past calls, and tool results
come back as user messages holding ``{"tool_response": ..}`` (most
templates have no 'tool' role). A turn that may call no tool gets the past
exchange told in plain words instead, so the model does not imitate JSON.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from appliance.server.protocol import ChatMessage, FunctionCall, NamedToolChoice, ToolCall, ToolChoice, ToolDefinition

NO_ARGUMENTS = {"type": "object", "properties": {}, "additionalProperties": False}


def _call_schema(tool: ToolDefinition) -> dict[str, Any]:
    f = tool.function
    return {"type": "object", "properties": {"name": {"const": f.name}, "arguments": f.parameters or NO_ARGUMENTS},
            "required": ["name", "arguments"], "additionalProperties": False}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class ToolPlan:
    tools: list[ToolDefinition]
    choice: ToolChoice
    parallel: bool = False

    @property
    def callable(self) -> list[ToolDefinition]:
        if isinstance(self.choice, NamedToolChoice):
            return [t for t in self.tools if t.function.name == self.choice.function.name]
        return self.tools

    @property
    def must_call(self) -> bool:
        return self.choice == "required" or isinstance(self.choice, NamedToolChoice)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of every answer the model may give."""
        calls = [_call_schema(t) for t in self.callable]
        call = calls[0] if len(calls) == 1 else {"anyOf": calls}
        if self.parallel:
            shape = {"type": "object", "properties": {"tool_calls": {"type": "array", "items": call, "minItems": 1}},
                     "required": ["tool_calls"], "additionalProperties": False}
        else:
            shape = {"type": "object", "properties": {"tool_call": call}, "required": ["tool_call"],
                     "additionalProperties": False}
        if self.must_call:
            return shape
        answer = {"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"],
                  "additionalProperties": False}
        return {"anyOf": [shape, answer]}

    def instructions(self) -> str:
        listed = json.dumps([{"name": t.function.name, "description": t.function.description or "",
                              "parameters": t.function.parameters or NO_ARGUMENTS} for t in self.callable])
        if self.parallel:
            call = '{"tool_calls": [{"name": "<tool name>", "arguments": {<its arguments>}}, ...]}'
        else:
            call = '{"tool_call": {"name": "<tool name>", "arguments": {<its arguments>}}}'
        text = f"You can call these tools (each one's arguments follow its JSON schema 'parameters'):\n{listed}\n"
        if self.must_call:
            return text + f"Answer with a tool call, as JSON: {call}"
        return text + (f"To call a tool, answer with JSON: {call}\n"
                       'To answer the user directly, answer with JSON: {"response": "<your answer>"}')

    def messages(self, messages: list[ChatMessage]) -> list[dict[str, str]]:
        """The conversation for a template without tools: instructions first, calls and results as JSON."""
        names = {c.id: c.function.name for m in messages for c in m.tool_calls or []}
        out: list[dict[str, str]] = []
        for m in messages:
            if m.role == "assistant" and m.tool_calls:
                calls = [{"name": c.function.name, "arguments": _arguments(c.function.arguments)}
                         for c in m.tool_calls]
                body = {"tool_calls": calls} if len(calls) > 1 or self.parallel else {"tool_call": calls[0]}
                out.append({"role": "assistant", "content": json.dumps(body)})
            elif m.role == "assistant":
                out.append({"role": "assistant", "content": json.dumps({"response": m.text()})})
            elif m.role == "tool":
                result = {"tool_response": {"name": names.get(m.tool_call_id or "", m.name or ""),
                                            "tool_call_id": m.tool_call_id, "content": m.text()}}
                out.append({"role": "user", "content": json.dumps(result)})
            else:
                out.append(m.for_template())
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + self.instructions()}
        else:
            out.insert(0, {"role": "system", "content": self.instructions()})
        return out

    @staticmethod
    def in_words(messages: list[ChatMessage]) -> list[dict[str, str]]:
        """A past tool exchange told in plain words, for a turn that calls no tool (so none is imitated)."""
        names = {c.id: c.function.name for m in messages for c in m.tool_calls or []}
        out: list[dict[str, str]] = []
        for m in messages:
            if m.role == "assistant" and m.tool_calls:
                said = "; ".join(f"calling {c.function.name} with {c.function.arguments}" for c in m.tool_calls)
                said = said[0].upper() + said[1:]
                out.append({"role": "assistant", "content": (m.text() + "\n" if m.text() else "") + said})
            elif m.role == "tool":
                name = names.get(m.tool_call_id or "", m.name or "the tool")
                out.append({"role": "user", "content": f"{name} returned: {m.text()}"})
            else:
                out.append(m.for_template())
        return out

    def parse(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """The answer's content and calls; text that is not a whole answer (cut by max_tokens) stays content."""
        try:
            answer = json.loads(text)
        except ValueError:
            return text, []
        if not isinstance(answer, dict):
            return text, []
        raw = answer.get("tool_calls") or ([answer["tool_call"]] if "tool_call" in answer else [])
        calls = [ToolCall(id=f"call_{uuid.uuid4().hex[:24]}",
                          function=FunctionCall(name=c["name"], arguments=json.dumps(c.get("arguments", {}))))
                 for c in raw if isinstance(c, dict) and "name" in c]
        if calls:
            return None, calls
        if isinstance(answer.get("response"), str):
            return answer["response"], []
        return text, []
