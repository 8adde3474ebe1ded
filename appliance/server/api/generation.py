"""Text generation shared by chat and completions: admit a job, then stream its text or collect it.

A ``Job`` is one accepted generation (one choice of a request): its
sequence in the scheduler, the stop strings to honour, and the key its
usage is charged to (once, when it ends, however it ends; the prompt only
by the first choice of each prompt). Each token's log-probabilities, when
asked for, are released with the text that holds the token, so a stream
never shows the log-probabilities of text it has not shown.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator, TypeVar

from starlette.requests import Request

from appliance.auth.keys import KeyRecord, KeyStore
from appliance.engine.grammar import Grammar, GrammarError
from appliance.engine.sampling import SamplingParams
from appliance.engine.tokenizer import NoChatTemplate, TextStream
from appliance.server.openai_errors import ApiError
from appliance.server.protocol import ChatMessage, UsageInfo
from appliance.server.runtime import ChatModel, Runtime
from appliance.server.scheduler import Generation, QueueFull
from appliance.server.tool_calls import ToolPlan

T = TypeVar("T")


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


def token_text(raw: bytes) -> str:
    """A token as OpenAI shows it: its text, or its bytes spelled out when they are not whole UTF-8."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw)


def grammar_for(model: ChatModel, schema: dict | None, param: str) -> Grammar | None:
    """The compiled grammar for a JSON schema (None: free text); a schema it cannot compile is a 400."""
    if schema is None:
        return None
    try:
        return model.grammars.json_schema(schema)
    except GrammarError as exc:
        raise ApiError(400, f"invalid JSON schema in '{param}': {exc}", param, "invalid_value") from None


def chat_messages(messages: list[ChatMessage], plan: ToolPlan | None) -> list[dict[str, str]]:
    """The conversation as the template takes it; tool exchanges in the generic format."""
    if plan is not None:
        return plan.messages(messages)
    if any(m.tool_calls or m.role == "tool" for m in messages):  # a past tool exchange, no tools this turn
        return ToolPlan.in_words(messages)
    return [m.for_template() for m in messages]


def chat_prompt(model: ChatModel, messages: list[dict[str, str]]) -> list[int]:
    try:
        text = model.tokenizer.render_chat(messages)
    except NoChatTemplate:
        raise ApiError(400, f"model {model.id} has no chat template; send a plain prompt to /v1/completions",
                       "model", "unsupported_value") from None
    except Exception as exc:  # the model's own template rejects the conversation (e.g. role order)
        raise ApiError(400, f"the model's chat template rejected these messages: {exc}", "messages",
                       "invalid_value") from None
    return model.tokenizer.encode(text)


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
class TokenOut:
    """One generated token as the client may see it: where its text starts, and its log-probabilities."""

    token: int
    offset: int
    end: int
    logprob: float | None
    top: list[tuple[int, float]] | None


@dataclass
class Job:
    model: ChatModel
    gen: Generation
    stops: list[str]
    keys: KeyStore
    key: KeyRecord
    id: str
    index: int = 0
    charge_prompt: bool = True
    created: int = field(default_factory=lambda: int(time.time()))
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    tokens: list[TokenOut] = field(default_factory=list)
    _released: int = 0
    _charged: bool = False

    @property
    def prompt_tokens(self) -> int:
        return len(self.gen.prompt)

    def usage(self) -> UsageInfo:
        return UsageInfo.of(self.prompt_tokens, self.completion_tokens)

    def _charge(self) -> None:
        if not self._charged:
            self._charged = True
            self.keys.record_usage(self.key.id, self.prompt_tokens if self.charge_prompt else 0,
                                   self.completion_tokens)

    def released(self) -> list[TokenOut]:
        """Tokens whose text has been given out since the last call (all of it, once the job ended)."""
        limit = len(self.text)
        done = self.finish_reason is not None
        n = self._released
        while n < len(self.tokens) and (self.tokens[n].end <= limit or (done and self.tokens[n].offset < limit)):
            n += 1
        out, self._released = self.tokens[self._released:n], n
        if done:
            self._released = len(self.tokens)  # tokens wholly after a stop string are never shown
        return out

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
                    start = len(self.text) + len(pending)
                    pending += decoder.push(event.token)
                    if event.logprob is not None:
                        self.tokens.append(TokenOut(event.token, start, len(self.text) + len(pending),
                                                    event.logprob, event.top))
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
                self.finish_reason = "stop" if event.finish_reason == "end" else event.finish_reason
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



async def collect(jobs: list[Job], request: Request) -> list[Job]:
    """Run every job to completion, but free their slots at once if the client goes away."""

    async def consume(job: Job) -> None:
        async for _ in job.deltas():
            pass

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    work = asyncio.ensure_future(asyncio.gather(*(consume(j) for j in jobs)))
    watch = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (work, watch):
            if not t.done():
                t.cancel()
    if work in done:
        work.result()
        return jobs
    for job in jobs:
        job.cancel()
        job._charge()
    # Nobody is left to read an answer (the client went away, or the server is stopping): end the request
    # with an error rather than build a response from jobs that never finished.
    raise ApiError(503, "the request was cancelled before it finished: the client disconnected or the server is "
                   "shutting down; send it again", code="request_cancelled")


async def merged(streams: list[AsyncIterator[T]]) -> AsyncIterator[T]:
    """Items of several streams as each arrives (the n choices of one request); an error in one ends all."""
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put(item)
        except BaseException as exc:  # handed to the consumer, which raises it
            await queue.put(exc)
        finally:
            await queue.put(end)

    tasks = [asyncio.ensure_future(pump(s)) for s in streams]
    try:
        left = len(tasks)
        while left:
            item = await queue.get()
            if item is end:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def start_jobs(request: Request, key: KeyRecord, model: ChatModel, prompt: list[int], max_tokens: int,
               params: SamplingParams, stops: list[str], job_id: str, n: int = 1, first_index: int = 0,
               grammar: Grammar | None = None) -> list[Job]:
    """Queue ``n`` choices of one prompt (all or none: 429 when the model's queue is full) and count the prompt.

    Choices after the first follow it, so they copy its prefilled prompt
    instead of computing it again; each draws from its own seeded stream.
    """
    loop = asyncio.get_running_loop()
    jobs: list[Job] = []
    try:
        for i in range(n):
            gen = Generation(prompt, max_tokens, params.for_choice(first_index + i), loop,
                             constraint=grammar.start() if grammar is not None else None,
                             follows=jobs[0].gen if jobs else None)
            model.scheduler.submit(gen)
            jobs.append(Job(model, gen, stops, request.app.state.keys, key, job_id, index=first_index + i,
                            charge_prompt=i == 0))
    except QueueFull as exc:
        for job in jobs:
            job.gen.cancel()
        model.scheduler.wake()
        raise ApiError(429, f"the box is busy ({exc}); retry shortly", code="queue_full",
                       headers={"Retry-After": str(model.scheduler.retry_after())}) from None
    request.app.state.runtime.metrics.prompt_tokens.labels(model.id).inc(len(prompt))
    return jobs
