"""Text generation shared by chat and completions: submit, stream text deltas, honour stop strings."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

from starlette.requests import Request

from appliance.engine.sampling import SamplingParams
from appliance.engine.tokenizer import StreamDecoder
from appliance.server.openai_errors import ApiError
from appliance.server.runtime import ChatModel, Runtime
from appliance.server.scheduler import Generation, QueueFull
from appliance.server.schemas import _Sampling


@dataclass
class Outcome:
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0


def require_ready(runtime: Runtime) -> None:
    if not runtime.ready:
        raise ApiError(503, f"the box is not ready: {runtime.reason}", code="not_ready",
                       headers={"Retry-After": "5"})


def chat_model(runtime: Runtime, model: str) -> ChatModel:
    require_ready(runtime)
    m = runtime.chat.get(model)
    if m is None:
        hint = "it is an embeddings model; use /v1/embeddings" if model in runtime.embeddings else \
            f"available: {', '.join(runtime.chat) or 'none'}"
        raise ApiError(404, f"The model '{model}' does not exist or is not a chat model ({hint})", "model",
                       "model_not_found")
    return m


def sampling_params(req: _Sampling) -> SamplingParams:
    if req.n not in (None, 1):
        raise ApiError(400, "n > 1 is not supported by this box; send separate requests (they are batched)", "n",
                       "unsupported_value")
    if req.logprobs:
        raise ApiError(400, "logprobs are not supported by this box", "logprobs", "unsupported_value")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(req, name):
            raise ApiError(400, f"{name} is not supported by this box; leave it at 0", name, "unsupported_value")
    temperature = 1.0 if req.temperature is None else req.temperature
    seed = None if req.seed is None else req.seed % (1 << 64)  # numpy's generator refuses negative seeds
    return SamplingParams(temperature=temperature, top_p=1.0 if req.top_p is None else req.top_p, seed=seed)


def budget(model: ChatModel, prompt_tokens: int, requested: int | None, param: str) -> int:
    """max_tokens after the context check, in OpenAI's words when it does not fit."""
    context = model.context_length
    if prompt_tokens >= context or (requested is not None and prompt_tokens + requested > context):
        want = prompt_tokens + (requested or 0)
        raise ApiError(400, f"This model's maximum context length is {context} tokens. However, you requested "
                            f"{want} tokens ({prompt_tokens} in the prompt, {requested or 0} for the completion). "
                            "Please reduce the length of the prompt or the completion.", param,
                       "context_length_exceeded")
    return requested if requested is not None else context - prompt_tokens


def submit(model: ChatModel, prompt: list[int], max_tokens: int, params: SamplingParams) -> Generation:
    gen = Generation(prompt, max_tokens, params, asyncio.get_running_loop())
    try:
        return model.scheduler.submit(gen)
    except QueueFull as exc:
        raise ApiError(429, f"the box is busy ({exc}); retry shortly", code="queue_full",
                       headers={"Retry-After": str(model.scheduler.retry_after())}) from None


async def text_stream(model: ChatModel, gen: Generation, stops: list[str], out: Outcome) -> AsyncIterator[str]:
    """Yield text deltas; fills ``out`` with the finish reason and token count when done.

    Text that might be the start of a stop string is held back until it
    cannot be, so a stop string never reaches the client.
    """
    decoder = StreamDecoder(model.tokenizer)
    hold = max((len(s) for s in stops), default=0)
    pending = ""
    try:
        while True:
            event = await gen.events.get()
            if event.token is not None:
                out.completion_tokens += 1
                pending += decoder.push(event.token)
                cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    out.text += pending[:cut]
                    out.finish_reason = "stop"
                    if cut:
                        yield pending[:cut]
                    return
                split = max(0, len(pending) - max(0, hold - 1))  # the tail may begin a stop string
                ready, pending = pending[:split], pending[split:]
                if ready:
                    out.text += ready
                    yield ready
                continue
            if event.finish_reason == "error":
                raise ApiError(503, event.error or "generation failed", code="engine_error")
            if event.finish_reason == "stop":
                out.completion_tokens += 1  # the end-of-sequence token
            out.finish_reason = event.finish_reason
            if pending:
                out.text += pending
                yield pending
            return
    finally:
        gen.cancel()  # a no-op if the scheduler already finished it; frees the slot otherwise
        model.scheduler.wake()


async def collect(model: ChatModel, gen: Generation, stops: list[str], request: Request) -> Outcome:
    """Run to completion, but free the slot at once if the client goes away."""
    out = Outcome()

    async def consume() -> None:
        async for _ in text_stream(model, gen, stops, out):
            pass

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    work = asyncio.ensure_future(consume())
    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (work, watch):
            if not t.done():
                t.cancel()
    if work in done:
        work.result()
    else:
        gen.cancel()
        model.scheduler.wake()
    return out
