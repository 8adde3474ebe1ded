"""The OpenAI protocol as the box speaks it: requests, responses, stream chunks and errors, all typed.

Each request turns itself into sampling parameters in one place
(``to_sampling_params``) and refuses, with a 400 naming the parameter, any
field that would change the output and that the box does not honour.
Unknown fields are accepted (SDKs send new ones all the time) and listed
by ``ignored_fields`` so the route can log their names.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from appliance.engine.sampling import SamplingParams
from appliance.server.openai_errors import ApiError, ErrorResponse, error_responses

__all__ = ["ErrorResponse", "error_responses"]  # the error half of the protocol lives beside its handlers

FinishReason = Literal["stop", "length"]


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


def _refuse(param: str, message: str) -> ApiError:
    return ApiError(400, message, param, "unsupported_value")


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


class _GenerationRequest(OpenAIRequest):
    """Fields chat and completions share; ``to_sampling_params`` refuses what the box does not honour."""

    model: str
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | int | None = None
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

    def to_sampling_params(self) -> SamplingParams:
        if self.n not in (None, 1):
            raise _refuse("n", "n > 1 is not supported by this box; send separate requests (they are batched)")
        if self.logprobs:
            raise _refuse("logprobs", "logprobs are not supported by this box")
        if self.logit_bias:
            raise _refuse("logit_bias", "logit_bias is not supported by this box; leave it out")
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(self, name):
                raise _refuse(name, f"{name} is not supported by this box; leave it at 0")
        seed = None if self.seed is None else self.seed % (1 << 64)  # numpy's generator refuses negative seeds
        return SamplingParams(temperature=1.0 if self.temperature is None else self.temperature,
                              top_p=1.0 if self.top_p is None else self.top_p, seed=seed)


# -- chat --------------------------------------------------------------------------------------------

class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _content_where_required(self) -> ChatMessage:
        if self.content is None and self.role in ("system", "developer", "user"):
            raise ValueError(f"a {self.role} message needs 'content'")
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


class ChatCompletionRequest(_GenerationRequest):
    messages: list[ChatMessage]
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list | None = None
    tool_choice: str | dict | None = None
    functions: list | None = None
    response_format: dict | None = None

    def to_sampling_params(self) -> SamplingParams:
        if not self.messages:
            raise ApiError(400, "'messages' must contain at least one message", "messages", "invalid_value")
        if self.tools or self.functions:
            raise _refuse("tools" if self.tools else "functions", "tools are not supported by this box")
        if self.tool_choice not in (None, "none"):
            raise _refuse("tool_choice", "tool_choice needs tools, which this box does not support")
        if self.response_format and self.response_format.get("type", "text") != "text":
            raise _refuse("response_format", "only response_format type 'text' is supported")
        if self.top_logprobs:
            raise _refuse("top_logprobs", "logprobs are not supported by this box")
        return super().to_sampling_params()

    def requested_tokens(self) -> tuple[int | None, str]:
        """The completion budget asked for, and the parameter that asked (for error messages)."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: None = None


class ChatCompletionChoice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    logprobs: None = None
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


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None

    @model_serializer(mode="wrap")
    def _only_set(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class ChatCompletionStreamChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(_Completed):
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChatCompletionStreamChoice]
    usage: UsageInfo | None = None


# -- completions -----------------------------------------------------------------------------------

class CompletionRequest(_GenerationRequest):
    prompt: str | list[str]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None

    def to_sampling_params(self) -> SamplingParams:
        if self.echo or self.suffix or (self.best_of not in (None, 1)):
            raise _refuse(None, "echo, suffix and best_of are not supported by this box")
        return super().to_sampling_params()

    def prompt_text(self) -> str:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if len(prompts) != 1:
            raise _refuse("prompt", "send one prompt per request (requests are batched on the box)")
        if not prompts[0]:
            raise ApiError(400, "'prompt' must not be empty", "prompt", "invalid_value")
        return prompts[0]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: None = None
    finish_reason: FinishReason | None = None


class CompletionResponse(_Completed):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None


CompletionChunk = CompletionResponse  # OpenAI streams completions in the response's own shape


# -- embeddings ----------------------------------------------------------------------------------------

class EmbeddingRequest(OpenAIRequest):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    def texts(self) -> list[str]:
        texts = [self.input] if isinstance(self.input, str) else self.input
        if not texts:
            raise ApiError(400, "'input' must not be empty", "input", "invalid_value")
        if not all(isinstance(t, str) for t in texts):
            raise _refuse("input", "token-id input is not supported; send text")
        if any(not t for t in texts):
            raise ApiError(400, "'input' strings must not be empty", "input", "invalid_value")
        if len(texts) > 2048:
            raise ApiError(400, "at most 2048 inputs per request", "input", "invalid_value")
        return texts  # type: ignore[return-value]


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


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
