"""The OpenAI-compatible routes: models, chat completions, completions, embeddings."""

from __future__ import annotations

import base64
import functools
import json
from typing import AsyncIterator

import anyio
import numpy as np
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from sse_starlette import EventSourceResponse, ServerSentEvent

from appliance.auth.keys import KeyRecord
from appliance.server.api.generation import (Job, TokenOut, budget, chat_messages, chat_model, chat_prompt, collect,
                                             grammar_for, merged, new_id, require_ready, start_jobs, token_text)
from appliance.server.auth import require_key_with_limits
from appliance.server.images_protocol import image_card_metadata
from appliance.server.openai_errors import ApiError, error_responses
from appliance.server.protocol import (
    ChatCompletionChoice,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatCompletionStreamChoice,
    ChoiceLogprobs,
    CompletionChoice,
    CompletionChunk,
    CompletionLogprobs,
    CompletionRequest,
    CompletionResponse,
    DeltaFunction,
    DeltaMessage,
    DeltaToolCall,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
    TokenLogprob,
    ToolCall,
    TopLogprob,
    UsageInfo,
    token_ids,
)
from appliance.server.runtime import ChatModel, Runtime
from appliance.server.tool_calls import ToolPlan


router = APIRouter(prefix="/v1")
GENERATION_ERRORS = error_responses(400, 401, 404, 429, 503)


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


@router.get("/models", response_model=ModelList, responses=error_responses(401, 429))
async def list_models(request: Request, _key: KeyRecord = Depends(require_key_with_limits)) -> ModelList:
    rt = _runtime(request)
    cards = [ModelCard(id=mid, created=rt.created, task=m.manifest.task, context_length=m.context_length)
             for mid, m in rt.chat.items()]
    cards += [ModelCard(id=mid, created=rt.created, task=m.manifest.task,
                        context_length=m.manifest.engine.max_tokens) for mid, m in rt.embeddings.items()]
    cards += [ModelCard(id=mid, created=rt.created, task=m.manifest.task,
                        context_length=m.manifest.engine.max_text_tokens, metadata=image_card_metadata(m.manifest.engine))
              for mid, m in rt.images.items()]
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


def _chat_logprobs(model: ChatModel, tokens: list[TokenOut]) -> ChoiceLogprobs:
    def entry(token: int, logprob: float) -> TopLogprob:
        raw = model.grammars.token_bytes(token)
        return TopLogprob(token=token_text(raw), logprob=logprob, bytes=list(raw))

    content = []
    for t in tokens:
        e = entry(t.token, t.logprob)  # type: ignore[arg-type]
        content.append(TokenLogprob(**e.model_dump(), top_logprobs=[entry(i, lp) for i, lp in t.top or []]))
    return ChoiceLogprobs(content=content)


def _completion_logprobs(model: ChatModel, tokens: list[TokenOut], shift: int) -> CompletionLogprobs:
    def text(token: int) -> str:
        return token_text(model.grammars.token_bytes(token))

    return CompletionLogprobs(tokens=[text(t.token) for t in tokens], token_logprobs=[t.logprob for t in tokens],
                              top_logprobs=[{text(i): lp for i, lp in t.top or []} for t in tokens],
                              text_offset=[shift + t.offset for t in tokens])


def _usage(jobs: list[Job]) -> UsageInfo:
    """Each prompt counted once, however many choices it had; every choice's completion counted."""
    return UsageInfo.of(sum(j.prompt_tokens for j in jobs if j.charge_prompt), sum(j.completion_tokens for j in jobs))


def _tool_answer(job: Job, plan: ToolPlan) -> tuple[str | None, list[ToolCall], str]:
    content, calls = plan.parse(job.text)
    return content, calls, "tool_calls" if calls else job.finish_reason  # type: ignore[return-value]


async def _chat_choice_chunks(job: Job, plan: ToolPlan | None,
                              logprobs: bool) -> AsyncIterator[ChatCompletionStreamChoice]:
    """One choice's stream: role, then content (with its log-probabilities) or the tool calls, then the finish."""
    yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(role="assistant", content=""))
    if plan is not None:  # the answer is JSON until it ends: parsed whole, then sent as content or calls
        async for _ in job.deltas():
            pass
        content, calls, finish = _tool_answer(job, plan)
        for i, call in enumerate(calls):
            yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(tool_calls=[DeltaToolCall(
                index=i, id=call.id, type="function", function=DeltaFunction(name=call.function.name, arguments=""))]))
            yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(tool_calls=[DeltaToolCall(
                index=i, function=DeltaFunction(arguments=call.function.arguments))]))
        if content:
            yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(content=content))
        yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(), finish_reason=finish)
        return
    async for text in job.deltas():
        released = job.released()
        yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(content=text),
                                         logprobs=_chat_logprobs(job.model, released) if logprobs else None)
    rest = job.released()
    yield ChatCompletionStreamChoice(index=job.index, delta=DeltaMessage(), finish_reason=job.finish_reason,
                                     logprobs=_chat_logprobs(job.model, rest) if logprobs and rest else None)


async def _chat_chunks(jobs: list[Job], plan: ToolPlan | None, logprobs: bool, include_usage: bool,
                       fingerprint: str | None) -> AsyncIterator[ChatCompletionChunk]:
    first = jobs[0]

    def chunk(choices: list[ChatCompletionStreamChoice], usage: UsageInfo | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=first.id, created=first.created, model=first.model.id,
                                   system_fingerprint=fingerprint, choices=choices, usage=usage)

    async for choice in merged([_chat_choice_chunks(j, plan, logprobs) for j in jobs]):
        yield chunk([choice])
    if include_usage:
        yield chunk([], _usage(jobs))


async def _completion_choice_chunks(job: Job, echo: str, logprobs: bool) -> AsyncIterator[CompletionChoice]:
    if echo:
        yield CompletionChoice(index=job.index, text=echo)
    async for text in job.deltas():
        released = job.released()
        yield CompletionChoice(index=job.index, text=text,
                               logprobs=_completion_logprobs(job.model, released, 0) if logprobs else None)
    rest = job.released()
    yield CompletionChoice(index=job.index, text="", finish_reason=job.finish_reason,
                           logprobs=_completion_logprobs(job.model, rest, 0) if logprobs and rest else None)


async def _completion_chunks(jobs: list[Job], echoes: list[str], logprobs: bool, include_usage: bool,
                             fingerprint: str | None) -> AsyncIterator[CompletionChunk]:
    first = jobs[0]

    def chunk(choices: list[CompletionChoice], usage: UsageInfo | None = None) -> CompletionChunk:
        return CompletionChunk(id=first.id, created=first.created, model=first.model.id,
                               system_fingerprint=fingerprint, choices=choices, usage=usage)

    async for choice in merged([_completion_choice_chunks(j, e, logprobs) for j, e in zip(jobs, echoes)]):
        yield chunk([choice])
    if include_usage:
        yield chunk([], _usage(jobs))


def _started(starts: list) -> list[Job]:
    """Start every prompt's jobs, or none: a refusal part-way cancels those already queued."""
    jobs: list[Job] = []
    try:
        for start in starts:
            jobs += start()
    except ApiError:
        for job in jobs:
            job.cancel()
        raise
    return jobs


@router.post("/chat/completions", response_model=ChatCompletionResponse, responses={
    **GENERATION_ERRORS, 200: {"content": {"text/event-stream": {}},
                               "description": "The completion, or with stream=true its chunks as server-sent events"}})
async def chat_completions(req: ChatCompletionRequest, request: Request,
                           key: KeyRecord = Depends(require_key_with_limits)):
    req.log_ignored("/v1/chat/completions")
    rt = _runtime(request)
    model = chat_model(rt, req.model)
    params = req.to_sampling_params(model.engine.vocab_size)
    active = req.active_tools()
    plan = ToolPlan(*active, parallel=bool(req.parallel_tool_calls)) if active else None
    grammar = grammar_for(model, plan.schema(), "tools") if plan else grammar_for(model, req.output_schema(),
                                                                              "response_format")
    prompt = chat_prompt(model, chat_messages(req.messages, plan))
    requested, param = req.requested_tokens()
    max_tokens = budget(model, len(prompt), requested, "messages" if requested is None else param)
    jobs = start_jobs(request, key, model, prompt, max_tokens, params, req.stop_list(), new_id("chatcmpl"),
                      n=req.choices, grammar=grammar)
    fingerprint = rt.store_info.get("sku")
    logprobs = params.logprobs is not None
    if req.stream:
        return _event_stream(_chat_chunks(jobs, plan, logprobs, req.include_usage(), fingerprint))
    await collect(jobs, request)
    choices = []
    for job in jobs:
        if plan is not None:
            content, calls, finish = _tool_answer(job, plan)
            message = ChatCompletionMessage(content=content, tool_calls=calls or None)
            choices.append(ChatCompletionChoice(index=job.index, message=message, finish_reason=finish))
        else:
            choices.append(ChatCompletionChoice(
                index=job.index, message=ChatCompletionMessage(content=job.text), finish_reason=job.finish_reason,
                logprobs=_chat_logprobs(model, job.released()) if logprobs else None))
    return ChatCompletionResponse(id=jobs[0].id, created=jobs[0].created, model=model.id,
                                  system_fingerprint=fingerprint, usage=_usage(jobs), choices=choices)


@router.post("/completions", response_model=CompletionResponse, responses={
    **GENERATION_ERRORS, 200: {"content": {"text/event-stream": {}},
                               "description": "The completion, or with stream=true its chunks as server-sent events"}})
async def completions(req: CompletionRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    req.log_ignored("/v1/completions")
    rt = _runtime(request)
    model = chat_model(rt, req.model)
    params = req.to_sampling_params(model.engine.vocab_size)
    grammar = grammar_for(model, req.output_schema(), "response_format")
    prompts = []
    for p in req.prompts():
        ids = model.tokenizer.encode(p) if isinstance(p, str) else token_ids(p, model.engine.vocab_size, "prompt")
        prompts.append((ids, p if isinstance(p, str) else model.tokenizer.decode(p)))
    budgets = [budget(model, len(ids), req.max_tokens, "max_tokens") for ids, _ in prompts]
    job_id, n = new_id("cmpl"), req.choices
    jobs = _started([functools.partial(start_jobs, request, key, model, ids, limit, params, req.stop_list(), job_id,
                                       n, i * n, grammar) for i, ((ids, _), limit) in enumerate(zip(prompts, budgets))])
    echoes = [text if req.echo else "" for _, text in prompts for _ in range(n)]
    fingerprint = rt.store_info.get("sku")
    logprobs = params.logprobs is not None
    if req.stream:
        return _event_stream(_completion_chunks(jobs, echoes, logprobs, req.include_usage(), fingerprint))
    await collect(jobs, request)
    choices = [CompletionChoice(index=j.index, text=echo + j.text, finish_reason=j.finish_reason,
                                logprobs=_completion_logprobs(model, j.released(), len(echo)) if logprobs else None)
               for j, echo in zip(jobs, echoes)]
    return CompletionResponse(id=job_id, created=jobs[0].created, model=model.id, system_fingerprint=fingerprint,
                              usage=_usage(jobs), choices=choices)


@router.post("/embeddings", response_model=EmbeddingResponse, responses=GENERATION_ERRORS)
async def embeddings(req: EmbeddingRequest, request: Request,
                     key: KeyRecord = Depends(require_key_with_limits)) -> Response:
    req.log_ignored("/v1/embeddings")
    rt = _runtime(request)
    require_ready(rt)
    m = rt.embeddings.get(req.model)
    if m is None:
        hint = "it is a chat model; use /v1/chat/completions" if req.model in rt.chat else \
            f"available: {', '.join(rt.embeddings) or 'none'}"
        raise ApiError(404, f"The model '{req.model}' does not exist or is not an embeddings model ({hint})",
                       "model", "model_not_found")
    inputs = req.inputs()
    dims = m.manifest.engine.dimensions
    if req.dimensions is not None and req.dimensions != dims:
        raise ApiError(400, f"this model returns {dims} dimensions; 'dimensions' must be {dims} or omitted",
                       "dimensions", "unsupported_value")
    if isinstance(inputs[0], str):
        counts = m.embedder.count_tokens(inputs)  # type: ignore[arg-type]
        run = functools.partial(m.embedder.embed, inputs)
    else:
        wrapped = [m.embedder.wrap_ids(token_ids(ids, m.embedder.vocab_size, "input")) for ids in inputs]
        counts = [len(ids) for ids in wrapped]
        run = functools.partial(m.embedder.embed_ids, wrapped)
    too_long = [i for i, c in enumerate(counts) if c > m.manifest.engine.max_tokens]
    if too_long:
        raise ApiError(400, f"input[{too_long[0]}] is {counts[too_long[0]]} tokens; this model takes at most "
                            f"{m.manifest.engine.max_tokens}", "input", "context_length_exceeded")
    vectors, used = await anyio.to_thread.run_sync(run)
    rt.metrics.embedded_inputs.labels(m.id).inc(len(inputs))
    request.app.state.keys.record_usage(key.id, used, 0)

    def encode(v: np.ndarray) -> list[float] | str:
        if req.encoding_format == "base64":
            return base64.b64encode(v.astype("<f4").tobytes()).decode()
        return v.tolist()

    body = EmbeddingResponse(model=m.id, data=[EmbeddingData(index=i, embedding=encode(v))
                                               for i, v in enumerate(vectors)],
                             usage=EmbeddingUsage(prompt_tokens=used, total_tokens=used))
    return Response(body.model_dump_json(), media_type="application/json")  # large: serialise once, in Rust
