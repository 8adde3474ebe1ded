"""The OpenAI protocol as the box speaks it: requests, responses, stream chunks and errors, all typed.

Each request turns itself into sampling parameters in one place
(``to_sampling_params``), validating what OpenAI validates (a 400 naming the
parameter), and refuses any field that would change the output and that
the box does not honour.
Unknown fields are accepted (SDKs send new ones all the time) and listed
by ``ignored_fields`` so the route can log their names.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from appliance.engine.sampling import SamplingParams
from appliance.server.openai_errors import ApiError, ErrorResponse, error_responses

log = logging.getLogger(__name__)

__all__ = ["ErrorResponse", "error_responses"]  # the error half of the protocol lives beside its handlers

FinishReason = Literal["stop", "length", "tool_calls"]
INT64 = (-(2**63), 2**63 - 1)
NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, v: Any) -> Any:
        # JSON may carry lone surrogates ("\ud800"); tokenizers and UTF-8 responses cannot take them
        if _has_lone_surrogate(v):
            raise ValueError("text must be valid Unicode (it holds a lone UTF-16 surrogate)")
        return v

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})

    def log_ignored(self, route: str) -> None:
        """Name (never the values of) what the box accepted without effect, so an admin sees what clients expect."""
        if names := self.ignored_fields():
            log.info("%s: accepted without effect: %s", route, ", ".join(names))


def _refuse(param: str | None, message: str) -> ApiError:
    return ApiError(400, message, param, "unsupported_value")


def _invalid(param: str | None, message: str) -> ApiError:
    return ApiError(400, message, param, "invalid_value")


# -- shared pieces -----------------------------------------------------------------------------------

class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int

    @classmethod
    def of(cls, prompt: int, completion: int) -> UsageInfo:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object with 'name' and 'schema'")
        return self


def token_ids(tokens: list[int], vocab_size: int, param: str) -> list[int]:
    bad = [t for t in tokens if not 0 <= t < vocab_size]
    if bad:
        raise _invalid(param, f"token id {bad[0]} is outside this model's vocabulary (0..{vocab_size - 1})")
    return tokens


class _GenerationRequest(OpenAIRequest):
    """Fields chat and completions share; ``to_sampling_params`` refuses what the box does not honour."""

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)  # vLLM's and llama-server's extension; -1 or 0 is off
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=INT64[0], le=INT64[1])
    n: int | None = Field(default=None, ge=1, le=16)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list):
            if len(v) > 4:
                raise ValueError("at most 4 stop sequences")
            if any(not s for s in v):
                raise ValueError("stop sequences must be non-empty")
        elif v == "":
            raise ValueError("stop sequence must be non-empty")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def choices(self) -> int:
        return self.n or 1

    def _logit_bias(self, vocab_size: int) -> dict[int, float]:
        out: dict[int, float] = {}
        for key, value in (self.logit_bias or {}).items():
            try:
                token = int(key)
            except ValueError:
                raise _invalid("logit_bias", f"logit_bias keys must be token ids; {key!r} is not an integer") from None
            if not 0 <= token < vocab_size:
                raise _invalid("logit_bias", f"logit_bias key {token} is not a token id of this model "
                                             f"(0..{vocab_size - 1})")
            if not -100 <= value <= 100:
                raise _invalid("logit_bias", f"logit_bias values must be between -100 and 100; {key} has {value}")
            out[token] = float(value)
        return out

    def _logprobs(self) -> int | None:
        raise NotImplementedError

    def output_schema(self) -> dict[str, Any] | None:
        """The JSON schema the output must match, from response_format; None for free text."""
        rf = self.response_format
        if rf is None or rf.type == "text":
            return None
        if rf.type == "json_object":
            return {"type": "object"}
        schema = rf.json_schema.schema_  # type: ignore[union-attr]
        return schema if schema is not None else {}

    def to_sampling_params(self, vocab_size: int) -> SamplingParams:
        if self.stream_options is not None and not self.stream:
            raise _invalid("stream_options", "'stream_options' is only allowed when 'stream' is true")
        seed = None if self.seed is None else self.seed % (1 << 64)  # numpy's generator takes unsigned seeds
        return SamplingParams(temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p,
                              top_k=max(0, self.top_k or 0), seed=seed, logit_bias=self._logit_bias(vocab_size),
                              presence_penalty=self.presence_penalty or 0.0,
                              frequency_penalty=self.frequency_penalty or 0.0, logprobs=self._logprobs())


# -- tools -------------------------------------------------------------------------------------------

class FunctionDefinition(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: FunctionName


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


# -- chat --------------------------------------------------------------------------------------------

class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _content_where_required(self) -> ChatMessage:
        if self.content is None and self.role in ("system", "developer", "user", "tool"):
            raise ValueError(f"a {self.role} message needs 'content'")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs 'tool_call_id' (the id of the call it answers)")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry 'tool_calls'")
        return self

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)

    def for_template(self) -> dict[str, str]:
        """The shape chat templates take; 'developer' is OpenAI's newer name for 'system'."""
        return {"role": "system" if self.role == "developer" else self.role, "content": self.text()}


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: list | None = None
    function_call: str | dict | None = None

    def _logprobs(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise _invalid("top_logprobs", "'top_logprobs' needs 'logprobs': true")
        return (self.top_logprobs or 0) if self.logprobs else None

    def active_tools(self) -> tuple[list[ToolDefinition], ToolChoice] | None:
        """The tools the model may (or must) call and how, or None when this turn calls none."""
        choice = self.tool_choice
        if isinstance(choice, NamedToolChoice):
            if not self.tools:
                raise _invalid("tool_choice", "a named 'tool_choice' needs 'tools'")
            names = [t.function.name for t in self.tools]
            if choice.function.name not in names:
                raise _invalid("tool_choice", f"tool_choice names '{choice.function.name}', which is not in "
                                              f"'tools' ({', '.join(names)})")
        elif choice == "required" and not self.tools:
            raise _invalid("tool_choice", "tool_choice 'required' needs 'tools'")
        if not self.tools or choice == "none":
            return None
        return self.tools, choice or "auto"

    def to_sampling_params(self, vocab_size: int) -> SamplingParams:
        if not self.messages:
            raise ApiError(400, "'messages' must contain at least one message", "messages", "invalid_value")
        if self.functions or self.function_call:
            raise _refuse("functions" if self.functions else "function_call",
                          "the deprecated 'functions' API is not supported; send 'tools' and 'tool_choice'")
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            raise _invalid("tools", "tool function names must be unique")
        if self.active_tools() is not None and self.output_schema() is not None:
            raise _refuse("response_format", "response_format with tools is not supported; the tool's "
                                             "parameters schema already constrains the call")
        if self.active_tools() is not None and self.logprobs:
            raise _refuse("logprobs", "logprobs with tools are not supported; leave one out")
        return super().to_sampling_params(vocab_size)

    def requested_tokens(self) -> tuple[int | None, str]:
        """The completion budget asked for, and the parameter that asked (for error messages)."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: None = None


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class _Completed(BaseModel):
    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str | None = None


class ChatCompletionResponse(_Completed):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatCompletionChoice]
    usage: UsageInfo


class _OnlySet(BaseModel):
    @model_serializer(mode="wrap")
    def _only_set(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class DeltaFunction(_OnlySet):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(_OnlySet):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunction


class DeltaMessage(_OnlySet):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatCompletionStreamChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Completed):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatCompletionStreamChoice]
    usage: UsageInfo | None = None


# -- completions -----------------------------------------------------------------------------------

class CompletionRequest(_GenerationRequest):
    prompt: str | list[int] | list[list[int]] | list[str]
    max_tokens: int | None = Field(default=16, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None

    def _logprobs(self) -> int | None:
        return self.logprobs

    def to_sampling_params(self, vocab_size: int) -> SamplingParams:
        if self.suffix:
            raise _refuse("suffix", "suffix (fill-in-the-middle) is not supported by this box")
        if self.best_of not in (None, 1, self.choices):
            raise _refuse("best_of", "best_of other than n is not supported; ask for n choices and pick")
        if self.echo and self.logprobs is not None:
            raise _refuse("echo", "echo with logprobs would need the prompt's log-probabilities, which this box "
                                  "does not compute; send one or the other")
        return super().to_sampling_params(vocab_size)

    def prompts(self) -> list[str | list[int]]:
        """Each prompt as text or token ids (OpenAI takes one or a list of either)."""
        p = self.prompt
        if isinstance(p, str):
            prompts: list[str | list[int]] = [p]
        elif p and isinstance(p[0], int):
            prompts = [p]  # type: ignore[list-item]
        else:
            prompts = list(p)  # type: ignore[arg-type]
        if not prompts:
            raise _invalid("prompt", "'prompt' must not be empty")
        for i, one in enumerate(prompts):
            if not one:
                raise _invalid("prompt", "'prompt' must not be empty" if len(prompts) == 1 else
                               f"prompt[{i}] must not be empty")
        if len(prompts) * self.choices > 64:
            raise _invalid("prompt", f"{len(prompts)} prompts x n={self.choices} is more than 64 completions "
                                     "in one request")
        return prompts


class CompletionLogprobs(BaseModel):
    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class CompletionResponse(_Completed):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


CompletionChunk = CompletionResponse  # OpenAI streams completions in the response's own shape


# -- embeddings ----------------------------------------------------------------------------------------

class EmbeddingRequest(OpenAIRequest):
    model: str
    input: str | list[int] | list[list[int]] | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        """The inputs as texts, or as token-id lists (one id list, or several, as LangChain sends them)."""
        given = self.input
        if isinstance(given, str):
            items: list = [given]
        elif given and isinstance(given[0], int):
            items = [given]
        else:
            items = list(given)
        if not items:
            raise ApiError(400, "'input' must not be empty", "input", "invalid_value")
        if any(not t for t in items):
            raise ApiError(400, "'input' strings must not be empty" if isinstance(items[0], str) else
                           "'input' token lists must not be empty", "input", "invalid_value")
        if len(items) > 2048:
            raise ApiError(400, "at most 2048 inputs per request", "input", "invalid_value")
        return items


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    model: str
    data: list[EmbeddingData]
    usage: EmbeddingUsage


# -- models --------------------------------------------------------------------------------------------

class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "appliance"
    task: str
    context_length: int
    metadata: dict[str, Any] | None = Field(default=None, description="text-to-image: sizes, steps, and whether "
                                             "the model is the small seeded one whose images are noise")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
