"""Ollama's API as the box speaks it: requests and responses of /api/chat, /api/generate, /api/embed and friends.

Options that change the output and that the box does not honour
(mirostat, repeat_penalty other than 1, ...) are refused with a 400 naming
them, as on the OpenAI side. Options about Ollama's own resources
(num_ctx, num_gpu, keep_alive, ...) have no meaning on the box, whose
engines are fixed at load; they are accepted and their names logged.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.engine.sampling import SamplingParams
from appliance.server.openai_errors import ApiError
from appliance.server.protocol import INT64, OpenAIRequest, ToolDefinition

API_VERSION = "0.12.0"  # the Ollama release whose API this follows; clients gate features on it

# Ollama's own defaults when a Modelfile sets none (repeat_penalty's 1.1 aside: the box has no repeat penalty)
DEFAULTS = {"temperature": 0.8, "top_k": 40, "top_p": 0.9}

RESOURCE_OPTIONS = {"num_ctx", "num_batch", "num_gpu", "main_gpu", "low_vram", "num_thread", "numa", "use_mmap",
                    "use_mlock", "vocab_only", "embedding_only", "logits_all", "f16_kv", "num_keep"}
# output-changing options the box lacks, accepted only at the value that turns them off
NEUTRAL = {"repeat_penalty": 1.0, "mirostat": 0, "tfs_z": 1.0, "typical_p": 1.0, "min_p": 0.0}


class Options(BaseModel):
    model_config = ConfigDict(extra="allow")

    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=INT64[0], le=INT64[1])
    num_predict: int | None = Field(default=None, ge=-2)
    stop: list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)

    def ignored(self) -> list[str]:
        """Options accepted without effect (resources, or unknown to the box), for the log."""
        return sorted(k for k in self.model_extra or {} if k not in NEUTRAL)

    def check(self) -> None:
        for name, value in (self.model_extra or {}).items():
            if name in NEUTRAL and value != NEUTRAL[name]:
                raise ApiError(400, f"option '{name}' is not supported by this box; leave it out or set it to "
                                    f"{NEUTRAL[name]}", f"options.{name}", "unsupported_value")

    def sampling(self, logprobs: int | None) -> SamplingParams:
        self.check()
        temperature = DEFAULTS["temperature"] if self.temperature is None else self.temperature
        return SamplingParams(temperature=temperature, top_p=DEFAULTS["top_p"] if self.top_p is None else self.top_p,
                              top_k=DEFAULTS["top_k"] if self.top_k is None else self.top_k,
                              seed=None if self.seed is None else self.seed % (1 << 64),
                              presence_penalty=self.presence_penalty or 0.0,
                              frequency_penalty=self.frequency_penalty or 0.0, logprobs=logprobs)

    def max_tokens(self) -> int | None:
        """num_predict as a budget: -1 (until the end) and -2 (fill the context) are the context's limit."""
        return None if self.num_predict is None or self.num_predict < 0 else self.num_predict or None


class OllamaFunctionCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class OllamaToolCall(BaseModel):
    function: OllamaFunctionCall


class OllamaMessage(BaseModel):
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None


class _OllamaRequest(OpenAIRequest):
    """Ollama's requests carry runtime options; those the box takes without effect are named like unknown fields."""

    model: str
    options: Options = Field(default_factory=Options)
    keep_alive: float | str | None = None

    def ignored_fields(self) -> list[str]:
        return [*super().ignored_fields(), *(f"options.{o}" for o in self.options.ignored())]


class _OllamaGenerate(_OllamaRequest):
    stream: bool = True  # Ollama streams unless told not to
    format: Literal["", "json"] | dict[str, Any] | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def output_schema(self) -> dict[str, Any] | None:
        if not self.format:
            return None
        return {"type": "object"} if self.format == "json" else self.format

    def sampling(self) -> SamplingParams:
        if self.think:
            raise ApiError(400, "this model does not think; leave 'think' out", "think", "unsupported_value")
        if self.top_logprobs is not None and not self.logprobs:
            raise ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs", "invalid_value")
        return self.options.sampling((self.top_logprobs or 0) if self.logprobs else None)


class OllamaChatRequest(_OllamaGenerate):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[ToolDefinition] | None = None


class OllamaGenerateRequest(_OllamaGenerate):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class OllamaEmbedRequest(_OllamaRequest):
    input: str | list[str]
    truncate: bool = True
    dimensions: int | None = Field(default=None, ge=1)


class OllamaEmbeddingsRequest(_OllamaRequest):
    """The older /api/embeddings: one prompt, one vector."""

    prompt: str


class OllamaShowRequest(OpenAIRequest):
    model: str | None = None
    name: str | None = None  # the older spelling
    verbose: bool | None = None


class Stats(BaseModel):
    """Ollama's closing counters; durations in nanoseconds."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0


class OllamaLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[OllamaLogprob] | None = None


class OllamaChatChunk(Stats):
    model: str
    created_at: str
    message: OllamaMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[OllamaLogprob] | None = None


class OllamaGenerateChunk(Stats):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    context: list[int] | None = None
    logprobs: list[OllamaLogprob] | None = None


class OllamaEmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int = 0
    prompt_eval_count: int


class OllamaEmbeddingsResponse(BaseModel):
    embedding: list[float]


class ModelDetails(BaseModel):
    parent_model: str = ""
    format: str = "onnx"
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class TagModel(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class TagsResponse(BaseModel):
    models: list[TagModel]


class ShowResponse(BaseModel):
    modelfile: str
    parameters: str
    template: str
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str


class VersionResponse(BaseModel):
    version: str
