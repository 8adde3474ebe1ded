"""Ollama's API on the same scheduler and keys: /api/chat, /generate, /embed, /tags, /show, /version.

LAN tools that speak Ollama natively (Open WebUI, Continue, n8n, Home
Assistant) plug into the box with no adapter. Unlike Ollama, every route
needs a bearer key. Streams are NDJSON (one JSON object a line), as
Ollama sends them, and errors are Ollama's ``{"error": "..."}``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from appliance import __version__
from appliance.auth.keys import KeyRecord
from appliance.server import openai_errors
from appliance.server.api.generation import (Job, TokenOut, budget, chat_messages, chat_model, chat_prompt, collect,
                                             grammar_for, new_id, require_ready, start_jobs, token_text)
from appliance.server.auth import require_key_with_limits
from appliance.server.ollama_protocol import (
    API_VERSION,
    DEFAULTS,
    ModelDetails,
    OllamaChatChunk,
    OllamaChatRequest,
    OllamaEmbeddingsRequest,
    OllamaEmbeddingsResponse,
    OllamaEmbedRequest,
    OllamaEmbedResponse,
    OllamaFunctionCall,
    OllamaGenerateChunk,
    OllamaGenerateRequest,
    OllamaLogprob,
    OllamaMessage,
    OllamaShowRequest,
    OllamaToolCall,
    ShowResponse,
    TagModel,
    TagsResponse,
    VersionResponse,
)
from appliance.server.openai_errors import ApiError
from appliance.server.protocol import ChatMessage, FunctionCall, ToolCall, token_ids
from appliance.server.runtime import ChatModel, EmbeddingModel, Runtime
from appliance.server.tool_calls import ToolPlan

log = logging.getLogger(__name__)


class OllamaRoute(APIRoute):
    """Errors as Ollama gives them, ``{"error": "..."}`` with the status, which its clients raise as ResponseError."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)
            except RequestValidationError as exc:
                openai_shaped = await openai_errors.validation_error(request, exc)
                return JSONResponse({"error": json.loads(openai_shaped.body)["error"]["message"]}, status_code=400)

        return route


router = APIRouter(prefix="/api", route_class=OllamaRoute, tags=["ollama"])


def _runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def _name(model: str) -> str:
    """Ollama names carry a tag; the box has one version of each model, 'latest'."""
    return model.removesuffix(":latest")


def _chat_model(rt: Runtime, model: str) -> ChatModel:
    return chat_model(rt, _name(model))


def _embedding_model(rt: Runtime, model: str) -> EmbeddingModel:
    require_ready(rt)
    m = rt.embeddings.get(_name(model))
    if m is None:
        raise ApiError(404, f"model '{model}' not found (embeddings models: {', '.join(rt.embeddings) or 'none'})",
                       "model", "model_not_found")
    return m


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _stats(job: Job, started: float) -> dict[str, int]:
    """Ollama's closing counters from the sequence's own timestamps, in nanoseconds."""
    end = time.monotonic()
    first = job.gen.first_token_at or end
    return {"total_duration": int((time.perf_counter() - started) * 1e9), "load_duration": 0,
            "prompt_eval_count": job.prompt_tokens, "prompt_eval_duration": int((first - job.gen.admitted_at) * 1e9),
            "eval_count": job.completion_tokens, "eval_duration": int((end - first) * 1e9)}


def _logprobs(model: ChatModel, tokens: list[TokenOut]) -> list[OllamaLogprob]:
    def entry(token: int, logprob: float, top: list[OllamaLogprob] | None = None) -> OllamaLogprob:
        raw = model.grammars.token_bytes(token)
        return OllamaLogprob(token=token_text(raw), logprob=logprob, bytes=list(raw), top_logprobs=top)

    return [entry(t.token, t.logprob, [entry(i, lp) for i, lp in t.top or []])  # type: ignore[arg-type]
            for t in tokens]


async def _ndjson(lines: AsyncIterator[BaseModel]) -> AsyncIterator[bytes]:
    try:
        async for line in lines:
            yield line.model_dump_json(exclude_none=True).encode() + b"\n"
    except ApiError as exc:
        yield json.dumps({"error": exc.message}).encode() + b"\n"


def _stream(lines: AsyncIterator[BaseModel]) -> StreamingResponse:
    return StreamingResponse(_ndjson(lines), media_type="application/x-ndjson")


def _body(model: BaseModel) -> Response:
    return Response(model.model_dump_json(exclude_none=True), media_type="application/json")


def _done_reason(job: Job) -> str:
    return job.finish_reason or "stop"


# -- chat --------------------------------------------------------------------------------------------

def _conversation(req: OllamaChatRequest) -> list[ChatMessage]:
    """Ollama's messages as the OpenAI ones the prompt builder takes (tool calls get ids to pair results)."""
    out: list[ChatMessage] = []
    pending: dict[str, str] = {}  # tool name -> id of its latest unanswered call
    for i, m in enumerate(req.messages):
        if m.images:
            raise ApiError(400, f"messages[{i}] has images; this model reads text only", f"messages[{i}].images",
                           "unsupported_value")
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for j, c in enumerate(m.tool_calls):
                call_id = f"call_{i}_{j}"
                pending[c.function.name] = call_id
                calls.append(ToolCall(id=call_id, function=FunctionCall(name=c.function.name,
                                                                        arguments=json.dumps(c.function.arguments))))
            out.append(ChatMessage(role="assistant", content=m.content or None, tool_calls=calls))
        elif m.role == "tool":
            name = m.tool_name or ""
            out.append(ChatMessage(role="tool", content=m.content, name=name or None,
                                   tool_call_id=pending.pop(name, f"call_{i}")))
        else:
            out.append(ChatMessage(role=m.role, content=m.content))
    return out


def _reply(job: Job, plan: ToolPlan | None) -> tuple[OllamaMessage, str]:
    if plan is None:
        return OllamaMessage(role="assistant", content=job.text), _done_reason(job)
    content, calls = plan.parse(job.text)
    tool_calls = [OllamaToolCall(function=OllamaFunctionCall(name=c.function.name,
                                                             arguments=json.loads(c.function.arguments)))
                  for c in calls]
    return OllamaMessage(role="assistant", content=content or "", tool_calls=tool_calls or None), _done_reason(job)


async def _chat_lines(job: Job, plan: ToolPlan | None, logprobs: bool, started: float) -> AsyncIterator[BaseModel]:
    model = job.model

    def line(message: OllamaMessage, tokens: list[TokenOut] | None = None) -> OllamaChatChunk:
        return OllamaChatChunk(model=model.id, created_at=_now(), message=message, done=False,
                               logprobs=_logprobs(model, tokens) if logprobs and tokens else None)

    if plan is None:
        async for text in job.deltas():
            yield line(OllamaMessage(role="assistant", content=text), job.released())
        rest = job.released()
        if rest and logprobs:
            yield line(OllamaMessage(role="assistant", content=""), rest)
        message = OllamaMessage(role="assistant", content="")
    else:  # JSON until it ends: parsed whole, then sent as content or calls (Ollama sends calls whole too)
        async for _ in job.deltas():
            pass
        message, _ = _reply(job, plan)
        yield line(message)
        message = OllamaMessage(role="assistant", content="")
    yield OllamaChatChunk(model=model.id, created_at=_now(), message=message, done=True,
                          done_reason=_done_reason(job), **_stats(job, started))


@router.post("/chat", response_model=OllamaChatChunk)
async def chat(req: OllamaChatRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    started = time.perf_counter()
    req.log_ignored("/api/chat")
    model = _chat_model(_runtime(request), req.model)
    params = req.sampling()
    if not req.messages:  # Ollama's way of loading a model; the box's are always loaded
        return _body(OllamaChatChunk(model=model.id, created_at=_now(), done=True, done_reason="load",
                                     message=OllamaMessage(role="assistant", content="")))
    plan = ToolPlan(req.tools, "auto") if req.tools else None
    if plan is not None and req.format:
        raise ApiError(400, "'format' with 'tools' is not supported; the tools' schemas already constrain calls",
                       "format", "unsupported_value")
    if plan is not None and req.logprobs:
        raise ApiError(400, "'logprobs' with 'tools' is not supported; leave one out", "logprobs", "unsupported_value")
    grammar = grammar_for(model, plan.schema(), "tools") if plan else grammar_for(model, req.output_schema(), "format")
    prompt = chat_prompt(model, chat_messages(_conversation(req), plan))
    max_tokens = budget(model, len(prompt), req.options.max_tokens(), "options.num_predict")
    [job] = start_jobs(request, key, model, prompt, max_tokens, params, req.options.stop or [], new_id("ollama"),
                       grammar=grammar)
    logprobs = params.logprobs is not None
    if req.stream:
        return _stream(_chat_lines(job, plan, logprobs, started))
    await collect([job], request)
    message, reason = _reply(job, plan)
    return _body(OllamaChatChunk(model=model.id, created_at=_now(), message=message, done=True, done_reason=reason,
                                 logprobs=_logprobs(model, job.released()) if logprobs and plan is None else None,
                                 **_stats(job, started)))


# -- generate ----------------------------------------------------------------------------------------

def _generate_prompt(model: ChatModel, req: OllamaGenerateRequest) -> list[int]:
    for field in ("suffix", "template", "images"):
        if getattr(req, field):
            raise ApiError(400, f"'{field}' is not supported by this box", field, "unsupported_value")
    context = token_ids(req.context or [], model.engine.vocab_size, "context")
    if req.raw or not model.tokenizer.has_chat_template:
        return context + model.tokenizer.encode(req.prompt)
    messages = ([{"role": "system", "content": req.system}] if req.system else []) + \
        [{"role": "user", "content": req.prompt}]
    return context + chat_prompt(model, messages)


async def _generate_lines(job: Job, logprobs: bool, started: float) -> AsyncIterator[BaseModel]:
    model = job.model
    async for text in job.deltas():
        tokens = job.released()
        yield OllamaGenerateChunk(model=model.id, created_at=_now(), response=text, done=False,
                                  logprobs=_logprobs(model, tokens) if logprobs and tokens else None)
    rest = job.released()
    yield OllamaGenerateChunk(model=model.id, created_at=_now(), response="", done=True,
                              done_reason=_done_reason(job), context=job.gen.prompt + job.gen.generated,
                              logprobs=_logprobs(model, rest) if logprobs and rest else None, **_stats(job, started))


@router.post("/generate", response_model=OllamaGenerateChunk)
async def generate(req: OllamaGenerateRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    started = time.perf_counter()
    req.log_ignored("/api/generate")
    model = _chat_model(_runtime(request), req.model)
    params = req.sampling()
    if not req.prompt and not req.context:
        return _body(OllamaGenerateChunk(model=model.id, created_at=_now(), response="", done=True,
                                         done_reason="load"))
    grammar = grammar_for(model, req.output_schema(), "format")
    prompt = _generate_prompt(model, req)
    max_tokens = budget(model, len(prompt), req.options.max_tokens(), "options.num_predict")
    [job] = start_jobs(request, key, model, prompt, max_tokens, params, req.options.stop or [], new_id("ollama"),
                       grammar=grammar)
    logprobs = params.logprobs is not None
    if req.stream:
        return _stream(_generate_lines(job, logprobs, started))
    await collect([job], request)
    return _body(OllamaGenerateChunk(model=model.id, created_at=_now(), response=job.text, done=True,
                                     done_reason=_done_reason(job), context=job.gen.prompt + job.gen.generated,
                                     logprobs=_logprobs(model, job.released()) if logprobs else None,
                                     **_stats(job, started)))


# -- embeddings --------------------------------------------------------------------------------------

async def _embed(request: Request, key: KeyRecord, m: EmbeddingModel, texts: list[str], truncate: bool):
    if any(not t for t in texts) or not texts:
        raise ApiError(400, "'input' must not be empty", "input", "invalid_value")
    limit = m.manifest.engine.max_tokens
    if not truncate:
        counts = m.embedder.count_tokens(texts)
        too_long = [i for i, c in enumerate(counts) if c > limit]
        if too_long:
            raise ApiError(400, f"input[{too_long[0]}] is {counts[too_long[0]]} tokens; this model takes at most "
                                f"{limit} (or send truncate: true)", "input", "context_length_exceeded")
    vectors, used = await anyio.to_thread.run_sync(functools.partial(m.embedder.embed, texts))  # truncates at limit
    _runtime(request).metrics.embedded_inputs.labels(m.id).inc(len(texts))
    request.app.state.keys.record_usage(key.id, used, 0)
    return vectors, used


@router.post("/embed", response_model=OllamaEmbedResponse)
async def embed(req: OllamaEmbedRequest, request: Request, key: KeyRecord = Depends(require_key_with_limits)):
    started = time.perf_counter()
    req.log_ignored("/api/embed")
    m = _embedding_model(_runtime(request), req.model)
    dims = m.manifest.engine.dimensions
    if req.dimensions is not None and req.dimensions != dims:
        raise ApiError(400, f"this model returns {dims} dimensions; 'dimensions' must be {dims} or omitted",
                       "dimensions", "unsupported_value")
    texts = [req.input] if isinstance(req.input, str) else req.input
    vectors, used = await _embed(request, key, m, texts, req.truncate)
    return _body(OllamaEmbedResponse(model=m.id, embeddings=vectors.tolist(), prompt_eval_count=used,
                                     total_duration=int((time.perf_counter() - started) * 1e9)))


@router.post("/embeddings", response_model=OllamaEmbeddingsResponse)
async def embeddings(req: OllamaEmbeddingsRequest, request: Request,
                     key: KeyRecord = Depends(require_key_with_limits)):
    """The older single-prompt route, which some integrations still call."""
    req.log_ignored("/api/embeddings")
    m = _embedding_model(_runtime(request), req.model)
    vectors, _ = await _embed(request, key, m, [req.prompt], True)
    return _body(OllamaEmbeddingsResponse(embedding=vectors[0].tolist()))


# -- models ------------------------------------------------------------------------------------------

def _details(rt: Runtime, mid: str) -> tuple[ModelDetails, int, str, str]:
    """Ollama's details of a model, its size in bytes, digest and build time."""
    manifest = (rt.chat.get(mid) or rt.embeddings[mid]).manifest
    size = sum(f.size for f in manifest.files)
    digest = next((f.sha256 for f in manifest.files if f.path.endswith(".onnx.data")), manifest.files[0].sha256)
    family = mid.split("-")[0]
    details = ModelDetails(family=family, families=[family], parameter_size="",
                           quantization_level=getattr(manifest, "precision", "") or "")
    return details, size, digest, manifest.built_at


@router.get("/tags", response_model=TagsResponse)
async def tags(request: Request, _key: KeyRecord = Depends(require_key_with_limits)):
    rt = _runtime(request)
    require_ready(rt)
    models = []
    for mid in [*rt.chat, *rt.embeddings]:  # Ollama's API has no image models
        details, size, digest, built = _details(rt, mid)
        models.append(TagModel(name=f"{mid}:latest", model=f"{mid}:latest", modified_at=built, size=size,
                               digest=digest, details=details))
    return _body(TagsResponse(models=models))


@router.post("/show", response_model=ShowResponse)
async def show(req: OllamaShowRequest, request: Request, _key: KeyRecord = Depends(require_key_with_limits)):
    rt = _runtime(request)
    require_ready(rt)
    name = req.model or req.name
    if not name:
        raise ApiError(400, "'model' is a required property", "model", "missing_required_parameter")
    mid = _name(name)
    if mid not in rt.chat and mid not in rt.embeddings:
        raise ApiError(404, f"model '{name}' not found", "model", "model_not_found")
    details, _, _, built = _details(rt, mid)
    if mid in rt.chat:
        m = rt.chat[mid]
        info = {"general.architecture": details.family, "general.basename": mid,
                f"{details.family}.context_length": m.context_length, "general.file_type": m.manifest.precision}
        return _body(ShowResponse(modelfile=f"FROM {mid}\n", template=m.manifest.chat_template or "",
                                  parameters="\n".join(f"{k} {v}" for k, v in DEFAULTS.items()), details=details,
                                  model_info=info, capabilities=["completion", "tools"], modified_at=built))
    e = rt.embeddings[mid]
    info = {"general.architecture": details.family, "general.basename": mid,
            f"{details.family}.context_length": e.manifest.engine.max_tokens,
            f"{details.family}.embedding_length": e.manifest.engine.dimensions}
    return _body(ShowResponse(modelfile=f"FROM {mid}\n", template="", parameters="", details=details,
                              model_info=info, capabilities=["embedding"], modified_at=built))


@router.get("/version", response_model=VersionResponse)
async def version(_key: KeyRecord = Depends(require_key_with_limits)):
    return JSONResponse({"version": API_VERSION, "appliance": __version__})
