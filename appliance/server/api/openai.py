"""The OpenAI-compatible routes: models, chat completions, completions, embeddings."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import AsyncIterator

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.auth.keys import KeyRecord
from appliance.server.api.generation import (
    Outcome,
    budget,
    chat_model,
    collect,
    require_ready,
    sampling_params,
    submit,
    text_stream,
)
from appliance.server.auth import require_key_with_limits
from appliance.server.openai_errors import ApiError
from appliance.server.runtime import ChatModel, Runtime
from appliance.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, usage

router = APIRouter(prefix="/v1")


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.get("/models")
async def list_models(request: Request, _key: KeyRecord = Depends(require_key_with_limits)) -> dict:
    rt = _runtime(request)
    data = [{"id": mid, "object": "model", "created": rt.created, "owned_by": "appliance",
             "task": m.manifest.task, "context_length": m.context_length} for mid, m in rt.chat.items()]
    data += [{"id": mid, "object": "model", "created": rt.created, "owned_by": "appliance",
              "task": m.manifest.task} for mid, m in rt.embeddings.items()]
    return {"object": "list", "data": data}


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _chat_prompt(model: ChatModel, req: ChatCompletionRequest) -> list[int]:
    if not req.messages:
        raise ApiError(400, "'messages' must contain at least one message", "messages", "invalid_value")
    if req.tools:
        raise ApiError(400, "tools are not supported by this box", "tools", "unsupported_value")
    if req.response_format and req.response_format.get("type", "text") != "text":
        raise ApiError(400, "only response_format type 'text' is supported", "response_format", "unsupported_value")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in req.messages]
    try:
        text = model.tokenizer.render_chat(messages)
    except Exception as exc:  # the model's own template rejects the conversation (e.g. role order)
        raise ApiError(400, f"the model's chat template rejected these messages: {exc}", "messages",
                       "invalid_value") from None
    return model.tokenizer.encode(text)


async def _stream(request: Request, key: KeyRecord, model: ChatModel, gen, stops: list[str], chunk_base: dict,
                  make_delta, finish_delta, include_usage: bool, prompt_tokens: int,
                  first: dict | None) -> AsyncIterator[str]:
    out = Outcome()
    try:
        if first is not None:
            yield _sse({**chunk_base, "choices": [first]})
        async for text in text_stream(model, gen, stops, out):
            yield _sse({**chunk_base, "choices": [make_delta(text)]})
        yield _sse({**chunk_base, "choices": [finish_delta(out.finish_reason)]})
        if include_usage:
            yield _sse({**chunk_base, "choices": [], "usage": usage(prompt_tokens, out.completion_tokens)})
        yield "data: [DONE]\n\n"
    except ApiError as exc:
        yield _sse({"error": {"message": exc.message, "type": "server_error", "code": exc.code}})
    finally:
        request.app.state.keys.record_usage(key.id, prompt_tokens, out.completion_tokens)


# How each endpoint shapes a streamed chunk: text delta, final chunk, optional opening chunk.
_CHUNK_SHAPES = {
    "chat.completion": (
        lambda t: {"index": 0, "delta": {"content": t}, "logprobs": None, "finish_reason": None},
        lambda r: {"index": 0, "delta": {}, "logprobs": None, "finish_reason": r},
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None},
    ),
    "text_completion": (
        lambda t: {"index": 0, "text": t, "logprobs": None, "finish_reason": None},
        lambda r: {"index": 0, "text": "", "logprobs": None, "finish_reason": r},
        None,
    ),
}


async def _generate(request: Request, key: KeyRecord, model: ChatModel, req, params, prompt: list[int],
                    max_tokens: int, obj: str, id_prefix: str) -> StreamingResponse | tuple[Outcome, dict]:
    """Submit, then stream SSE chunks or wait for the whole answer; per-key usage is recorded either way."""
    rt = _runtime(request)
    rt.metrics.prompt_tokens.labels(model.id).inc(len(prompt))
    gen = submit(model, prompt, max_tokens, params)
    stops = req.stop_list()
    base = {"id": f"{id_prefix}-{uuid.uuid4().hex}", "object": obj, "created": int(time.time()), "model": model.id,
            "system_fingerprint": rt.store_info.get("sku")}
    if req.stream:
        delta, finish, first = _CHUNK_SHAPES[obj]
        include = bool(req.stream_options and req.stream_options.include_usage)
        chunk_base = {**base, "object": obj + ".chunk" if obj == "chat.completion" else obj}
        return StreamingResponse(
            _stream(request, key, model, gen, stops, chunk_base, delta, finish, include, len(prompt), first),
            media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    out = await collect(model, gen, stops, request)
    request.app.state.keys.record_usage(key.id, len(prompt), out.completion_tokens)
    return out, {**base, "usage": usage(len(prompt), out.completion_tokens)}


@router.post("/chat/completions")
async def chat_completions(req: ChatCompletionRequest, request: Request,
                           key: KeyRecord = Depends(require_key_with_limits)):
    model = chat_model(_runtime(request), req.model)
    params = sampling_params(req)
    prompt = _chat_prompt(model, req)
    requested = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_tokens = budget(model, len(prompt), requested, "messages" if requested is None else param)
    result = await _generate(request, key, model, req, params, prompt, max_tokens, "chat.completion", "chatcmpl")
    if isinstance(result, StreamingResponse):
        return result
    out, body = result
    return {**body, "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text, "refusal": None},
                                 "logprobs": None, "finish_reason": out.finish_reason}]}


@router.post("/completions")
async def completions(req: CompletionRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    model = chat_model(_runtime(request), req.model)
    params = sampling_params(req)
    if req.echo or req.suffix or (req.best_of not in (None, 1)):
        raise ApiError(400, "echo, suffix and best_of are not supported by this box", None, "unsupported_value")
    prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
    if len(prompts) != 1:
        raise ApiError(400, "send one prompt per request (requests are batched on the box)", "prompt",
                       "unsupported_value")
    if not prompts[0]:
        raise ApiError(400, "'prompt' must not be empty", "prompt", "invalid_value")
    prompt = model.tokenizer.encode(prompts[0])
    max_tokens = budget(model, len(prompt), req.max_tokens, "max_tokens")
    result = await _generate(request, key, model, req, params, prompt, max_tokens, "text_completion", "cmpl")
    if isinstance(result, StreamingResponse):
        return result
    out, body = result
    return {**body, "choices": [{"index": 0, "text": out.text, "logprobs": None, "finish_reason": out.finish_reason}]}


@router.post("/embeddings")
async def embeddings(req: EmbeddingRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    rt = _runtime(request)
    require_ready(rt)
    m = rt.embeddings.get(req.model)
    if m is None:
        hint = "it is a chat model; use /v1/chat/completions" if req.model in rt.chat else \
            f"available: {', '.join(rt.embeddings) or 'none'}"
        raise ApiError(404, f"The model '{req.model}' does not exist or is not an embeddings model ({hint})",
                       "model", "model_not_found")
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise ApiError(400, "'input' must not be empty", "input", "invalid_value")
    if not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "token-id input is not supported; send text", "input", "unsupported_value")
    if any(not t for t in texts):
        raise ApiError(400, "'input' strings must not be empty", "input", "invalid_value")
    if len(texts) > 2048:
        raise ApiError(400, "at most 2048 inputs per request", "input", "invalid_value")
    dims = m.manifest.engine.dimensions
    if req.dimensions is not None and req.dimensions != dims:
        raise ApiError(400, f"this model returns {dims} dimensions; 'dimensions' must be {dims} or omitted",
                       "dimensions", "unsupported_value")
    counts = m.embedder.count_tokens(texts)
    too_long = [i for i, c in enumerate(counts) if c > m.manifest.engine.max_tokens]
    if too_long:
        raise ApiError(400, f"input[{too_long[0]}] is {counts[too_long[0]]} tokens; this model takes at most "
                            f"{m.manifest.engine.max_tokens}", "input", "context_length_exceeded")
    vectors, used = await anyio.to_thread.run_sync(m.embedder.embed, texts)
    rt.metrics.embedded_inputs.labels(m.id).inc(len(texts))
    request.app.state.keys.record_usage(key.id, used, 0)

    def encode(v: np.ndarray):
        if req.encoding_format == "base64":
            return base64.b64encode(v.astype("<f4").tobytes()).decode()
        return v.tolist()

    return JSONResponse({"object": "list", "model": m.id,
                         "data": [{"object": "embedding", "index": i, "embedding": encode(v)}
                                  for i, v in enumerate(vectors)],
                         "usage": {"prompt_tokens": used, "total_tokens": used}})
