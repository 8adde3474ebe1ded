"""The OpenAI-compatible routes: models, chat completions, completions, embeddings."""

from __future__ import annotations

import base64
import json
import logging
from typing import AsyncIterator

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from appliance.auth.keys import KeyRecord
from appliance.engine.tokenizer import NoChatTemplate
from appliance.server.api.generation import Job, budget, chat_model, require_ready, start_job
from appliance.server.auth import require_key_with_limits
from appliance.server.openai_errors import ApiError, error_responses
from appliance.server.protocol import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamChoice,
    CompletionChoice,
    CompletionChunk,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    OpenAIRequest,
)
from appliance.server.runtime import ChatModel, Runtime

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1")
GENERATION_ERRORS = error_responses(400, 401, 404, 429, 503)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _note_ignored(req: OpenAIRequest, route: str) -> None:
    """Name (never the values of) fields the box does not know, so an admin can see what clients expect."""
    if ignored := req.ignored_fields():
        log.info("%s: ignored unknown request fields %s", route, ", ".join(ignored))


@router.get("/models", response_model=ModelList, responses=error_responses(401, 429))
async def list_models(request: Request, _key: KeyRecord = Depends(require_key_with_limits)) -> ModelList:
    rt = _runtime(request)
    cards = [ModelCard(id=mid, created=rt.created, task=m.manifest.task, context_length=m.context_length)
             for mid, m in rt.chat.items()]
    cards += [ModelCard(id=mid, created=rt.created, task=m.manifest.task,
                        context_length=m.manifest.engine.max_tokens) for mid, m in rt.embeddings.items()]
    return ModelList(data=cards)


async def _sse(chunks: AsyncIterator[BaseModel]) -> AsyncIterator[ServerSentEvent]:
    """Chunks as SSE ``data:`` events, then ``[DONE]``; a failure mid-stream becomes an error event."""
    try:
        async for chunk in chunks:
            yield ServerSentEvent(chunk.model_dump_json())
        yield ServerSentEvent("[DONE]")
    except ApiError as exc:
        yield ServerSentEvent(json.dumps({"error": {"message": exc.message, "type": "server_error",
                                                    "code": exc.code}}))


def _event_stream(chunks: AsyncIterator[BaseModel]) -> EventSourceResponse:
    return EventSourceResponse(_sse(chunks), headers={"Cache-Control": "no-cache"})


async def _chat_chunks(job: Job, include_usage: bool, fingerprint: str | None) -> AsyncIterator[ChatCompletionChunk]:
    def chunk(delta: DeltaMessage, finish_reason: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=job.id, created=job.created, model=job.model.id, system_fingerprint=fingerprint,
                                   choices=[ChatCompletionStreamChoice(delta=delta, finish_reason=finish_reason)])

    yield chunk(DeltaMessage(role="assistant", content=""))
    async for text in job.deltas():
        yield chunk(DeltaMessage(content=text))
    yield chunk(DeltaMessage(), job.finish_reason)
    if include_usage:
        yield ChatCompletionChunk(id=job.id, created=job.created, model=job.model.id, system_fingerprint=fingerprint,
                                  choices=[], usage=job.usage())


async def _completion_chunks(job: Job, include_usage: bool, fingerprint: str | None) -> AsyncIterator[CompletionChunk]:
    def chunk(text: str, finish_reason: str | None = None) -> CompletionChunk:
        return CompletionChunk(id=job.id, created=job.created, model=job.model.id, system_fingerprint=fingerprint,
                               choices=[CompletionChoice(text=text, finish_reason=finish_reason)])

    async for text in job.deltas():
        yield chunk(text)
    yield chunk("", job.finish_reason)
    if include_usage:
        yield CompletionChunk(id=job.id, created=job.created, model=job.model.id, system_fingerprint=fingerprint,
                              choices=[], usage=job.usage())


def _chat_prompt(model: ChatModel, req: ChatCompletionRequest) -> list[int]:
    messages = [m.for_template() for m in req.messages]
    try:
        text = model.tokenizer.render_chat(messages)
    except NoChatTemplate:
        raise ApiError(400, f"model {model.id} has no chat template; send a plain prompt to /v1/completions",
                       "model", "unsupported_value") from None
    except Exception as exc:  # the model's own template rejects the conversation (e.g. role order)
        raise ApiError(400, f"the model's chat template rejected these messages: {exc}", "messages",
                       "invalid_value") from None
    return model.tokenizer.encode(text)


@router.post("/chat/completions", response_model=ChatCompletionResponse, responses={
    **GENERATION_ERRORS, 200: {"content": {"text/event-stream": {}},
                               "description": "The completion, or with stream=true its chunks as server-sent events"}})
async def chat_completions(req: ChatCompletionRequest, request: Request,
                           key: KeyRecord = Depends(require_key_with_limits)):
    _note_ignored(req, "/v1/chat/completions")
    rt = _runtime(request)
    model = chat_model(rt, req.model)
    params = req.to_sampling_params()
    prompt = _chat_prompt(model, req)
    requested, param = req.requested_tokens()
    max_tokens = budget(model, len(prompt), requested, "messages" if requested is None else param)
    job = start_job(request, key, model, prompt, max_tokens, params, req.stop_list(), "chatcmpl")
    fingerprint = rt.store_info.get("sku")
    if req.stream:
        return _event_stream(_chat_chunks(job, req.include_usage(), fingerprint))
    await job.collect(request)
    return ChatCompletionResponse(
        id=job.id, created=job.created, model=model.id, system_fingerprint=fingerprint, usage=job.usage(),
        choices=[ChatCompletionChoice(message=ChatCompletionMessage(content=job.text),
                                      finish_reason=job.finish_reason)])


@router.post("/completions", response_model=CompletionResponse, responses={
    **GENERATION_ERRORS, 200: {"content": {"text/event-stream": {}},
                               "description": "The completion, or with stream=true its chunks as server-sent events"}})
async def completions(req: CompletionRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    _note_ignored(req, "/v1/completions")
    rt = _runtime(request)
    model = chat_model(rt, req.model)
    params = req.to_sampling_params()
    prompt = model.tokenizer.encode(req.prompt_text())
    max_tokens = budget(model, len(prompt), req.max_tokens, "max_tokens")
    job = start_job(request, key, model, prompt, max_tokens, params, req.stop_list(), "cmpl")
    fingerprint = rt.store_info.get("sku")
    if req.stream:
        return _event_stream(_completion_chunks(job, req.include_usage(), fingerprint))
    await job.collect(request)
    return CompletionResponse(id=job.id, created=job.created, model=model.id, system_fingerprint=fingerprint,
                              usage=job.usage(),
                              choices=[CompletionChoice(text=job.text, finish_reason=job.finish_reason)])


@router.post("/embeddings", response_model=EmbeddingResponse, responses=GENERATION_ERRORS)
async def embeddings(req: EmbeddingRequest, request: Request,
                     key: KeyRecord = Depends(require_key_with_limits)) -> Response:
    _note_ignored(req, "/v1/embeddings")
    rt = _runtime(request)
    require_ready(rt)
    m = rt.embeddings.get(req.model)
    if m is None:
        hint = "it is a chat model; use /v1/chat/completions" if req.model in rt.chat else \
            f"available: {', '.join(rt.embeddings) or 'none'}"
        raise ApiError(404, f"The model '{req.model}' does not exist or is not an embeddings model ({hint})",
                       "model", "model_not_found")
    texts = req.texts()
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

    def encode(v: np.ndarray) -> list[float] | str:
        if req.encoding_format == "base64":
            return base64.b64encode(v.astype("<f4").tobytes()).decode()
        return v.tolist()

    body = EmbeddingResponse(model=m.id, data=[EmbeddingData(index=i, embedding=encode(v))
                                               for i, v in enumerate(vectors)],
                             usage=EmbeddingUsage(prompt_tokens=used, total_tokens=used))
    return Response(body.model_dump_json(), media_type="application/json")  # large: serialise once, in Rust
