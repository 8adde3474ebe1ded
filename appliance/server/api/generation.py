"""Text generation shared by chat and completions: admit a job, then stream its text or collect it.

A ``Job`` is one accepted generation: its sequence in the scheduler, the
stop strings to honour, and the key its usage is charged to (once, when it
ends, however it ends).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

from starlette.requests import Request

from appliance.auth.keys import KeyRecord, KeyStore
from appliance.engine.sampling import SamplingParams
from appliance.engine.tokenizer import TextStream
from appliance.server.openai_errors import ApiError
from appliance.server.protocol import UsageInfo
from appliance.server.runtime import ChatModel, Runtime
from appliance.server.scheduler import Generation, QueueFull


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


@dataclass
class Job:
    model: ChatModel
    gen: Generation
    stops: list[str]
    keys: KeyStore
    key: KeyRecord
    id: str
    created: int = field(default_factory=lambda: int(time.time()))
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    _charged: bool = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.gen.prompt)

    def usage(self) -> UsageInfo:
        return UsageInfo.of(self.prompt_tokens, self.completion_tokens)

    def _charge(self) -> None:
        if not self._charged:
            self._charged = True
            self.keys.record_usage(self.key.id, self.prompt_tokens, self.completion_tokens)

    async def deltas(self) -> AsyncIterator[str]:
        """Text deltas as tokens arrive; ``finish_reason`` and the counts are set when it ends.

        Text that might be the start of a stop string is held back until it
        cannot be, so a stop string never reaches the client.
        """
        decoder = TextStream(self.model.tokenizer)
        hold = max((len(s) for s in self.stops), default=0)
        pending = ""
        try:
            while True:
                event = await self.gen.events.get()
                if event.token is not None:
                    self.completion_tokens += 1
                    pending += decoder.push(event.token)
                    cut = min((i for i in (pending.find(s) for s in self.stops) if i >= 0), default=-1)
                    if cut >= 0:
                        self.text += pending[:cut]
                        self.finish_reason = "stop"
                        if cut:
                            yield pending[:cut]
                        return
                    split = max(0, len(pending) - max(0, hold - 1))  # the tail may begin a stop string
                    ready, pending = pending[:split], pending[split:]
                    if ready:
                        self.text += ready
                        yield ready
                    continue
                if event.finish_reason == "error":
                    raise ApiError(503, event.error or "generation failed", code="engine_error")
                if event.finish_reason == "stop":
                    self.completion_tokens += 1  # the end-of-sequence token
                self.finish_reason = event.finish_reason
                if pending:
                    self.text += pending
                    yield pending
                return
        finally:
            self.cancel()  # a no-op if the scheduler already finished it; frees the slot otherwise
            self._charge()

    def cancel(self) -> None:
        self.gen.cancel()
        self.model.scheduler.wake()

    async def collect(self, request: Request) -> Job:
        """Run to completion, but free the slot at once if the client goes away."""

        async def consume() -> None:
            async for _ in self.deltas():
                pass

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        work, watch = asyncio.ensure_future(consume()), asyncio.ensure_future(disconnected())
        try:
            done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (work, watch):
                if not t.done():
                    t.cancel()
        if work in done:
            work.result()
        else:
            self.cancel()
            self._charge()
        return self


def start_job(request: Request, key: KeyRecord, model: ChatModel, prompt: list[int], max_tokens: int,
              params: SamplingParams, stops: list[str], id_prefix: str) -> Job:
    """Queue the generation (429 when the model's queue is full) and count its prompt."""
    gen = Generation(prompt, max_tokens, params, asyncio.get_running_loop())
    try:
        model.scheduler.submit(gen)
    except QueueFull as exc:
        raise ApiError(429, f"the box is busy ({exc}); retry shortly", code="queue_full",
                       headers={"Retry-After": str(model.scheduler.retry_after())}) from None
    request.app.state.runtime.metrics.prompt_tokens.labels(model.id).inc(len(prompt))
    return Job(model, gen, stops, request.app.state.keys, key, f"{id_prefix}-{uuid.uuid4().hex}")
