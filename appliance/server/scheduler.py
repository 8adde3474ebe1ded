"""Continuous batching for one LLM: requests join the running batch at step boundaries.

One thread per model drives the engine. Each step decodes one token for
every running sequence and prefills at most ``prefill_chunk`` prompt tokens
of newcomers, so a long prompt never stalls running streams for more than
one chunk. Slots (KV memory) are fixed at load: at most ``max_batch``
sequences run; up to ``max_queue`` more wait, and beyond that the API
answers 429. A cancelled request (client gone, stop string seen) leaves at
the next step boundary and its slot is free at once.

Sequences under a grammar (structured output, tool calls) get their next
token masks each step. Where the engine leaves a core free, one batched
call computes them on a worker thread beside the step, off the critical
path. Where the engine's threads take every core (the default), they are
computed on this thread right after the step: a worker competing with
the engine's spinning threads cost more than the masks themselves
(docs/structured-output.md has the figures).

The n choices of one request share its prompt: the first prefills it, the
others are admitted once it has and copy its cache.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from appliance.engine.base import LlmEngine, PrefillChunk, StepInput, prefill_take
from appliance.engine.grammar import Constraint, MaskBatch
from appliance.engine.sampling import Sampler, SamplingParams
from appliance.server.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The wait queue is at its bound; the caller answers 429 with Retry-After."""


@dataclass
class TokenEvent:
    token: int | None
    finish_reason: str | None = None  # "stop" (EOS) / "end" (the grammar ended, no EOS) / "length" / "error"
    error: str | None = None
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None


@dataclass
class Generation:
    """One sequence in flight; the API side reads ``events`` and may ``cancel()``."""

    prompt: list[int]
    max_tokens: int
    sampling: SamplingParams
    loop: asyncio.AbstractEventLoop
    constraint: Constraint | None = None
    follows: Generation | None = None  # another choice of the same request, whose prefilled prompt this one copies
    seq_id: int = 0
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    generated: list[int] = field(default_factory=list)
    cached_tokens: int = 0
    prefill_pos: int = 0
    cancelled: bool = False
    admitted_at: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None

    def cancel(self) -> None:
        self.cancelled = True

    def _emit(self, event: TokenEvent) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Scheduler:
    def __init__(self, model_id: str, engine: LlmEngine, metrics: Metrics, max_queue: int, prefill_chunk: int,
                 masks_beside_step: bool = True):
        self.model_id = model_id
        self.engine = engine
        self.metrics = metrics
        self.max_queue = max_queue
        self.prefill_chunk = max(2, prefill_chunk)  # a 1-token budget could never end a prompt (see prefill_take)
        self._waiting: deque[Generation] = deque()
        self._running: dict[int, Generation] = {}
        self._samplers: dict[int, Sampler] = {}
        self._masks: MaskBatch | None = None
        self.masks_beside_step = masks_beside_step
        self._ids = itertools.count(1)
        self._cv = threading.Condition()
        self._stop = False
        self.heartbeat = time.monotonic()
        self.steps = 0
        self._thread = threading.Thread(target=self._loop, name=f"scheduler-{model_id}", daemon=True)

    # -- API side --------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._masks is not None:
            self._masks.close()

    def submit(self, gen: Generation) -> Generation:
        with self._cv:
            if self._stop:
                gen._emit(TokenEvent(None, "error", "server shutting down"))
                return gen
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests already waiting for {self.model_id}")
            gen.seq_id = next(self._ids)
            self._waiting.append(gen)
            self._cv.notify()
        self._publish_depth()
        return gen

    def wake(self) -> None:
        """Let the loop notice a cancellation promptly even when idle."""
        with self._cv:
            self._cv.notify()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def retry_after(self) -> int:
        return max(1, min(30, len(self._waiting) // max(1, self.engine.max_batch)))

    # -- scheduler thread --------------------------------------------------------------------------
    def _publish_depth(self) -> None:
        m = self.metrics
        m.queue_depth.labels(self.model_id).set(len(self._waiting))
        m.running.labels(self.model_id).set(len(self._running))
        m.kv_used.labels(self.model_id).set(self.engine.cache_stats().tokens_used)

    def _leader_prefilling(self, gen: Generation) -> bool:
        lead = gen.follows
        if lead is None or lead.cancelled:
            return False
        if lead.seq_id in self._running:
            return lead.prefill_pos < len(lead.prompt)
        return any(w is lead for w in self._waiting)

    def _admit(self) -> None:
        deferred: list[Generation] = []
        while self._waiting and len(self._running) < self.engine.max_batch:
            gen = self._waiting.popleft()
            if gen.cancelled:
                continue
            if self._leader_prefilling(gen):
                deferred.append(gen)  # admitted once the first choice has prefilled, to copy its cache
                continue
            try:
                gen.cached_tokens = gen.prefill_pos = self.engine.admit(gen.seq_id, gen.prompt)
                self._samplers[gen.seq_id] = Sampler(gen.sampling)
            except Exception as exc:  # one bad request must not stop the model's loop
                log.exception("admitting a request to %s failed", self.model_id)
                self.engine.release(gen.seq_id)
                gen._emit(TokenEvent(None, "error", f"could not start generation: {type(exc).__name__}"))
                continue
            self._running[gen.seq_id] = gen
            if gen.cached_tokens:
                self.metrics.prefix_reused.labels(self.model_id).inc(gen.cached_tokens)
        self._waiting.extendleft(reversed(deferred))

    def _finish(self, gen: Generation, reason: str | None, error: str | None = None) -> None:
        self.engine.release(gen.seq_id)
        self._running.pop(gen.seq_id, None)
        self._samplers.pop(gen.seq_id, None)
        if reason is not None:
            gen._emit(TokenEvent(None, reason, error))

    def _plan(self) -> StepInput:
        work = StepInput()
        budget = self.prefill_chunk
        for gen in self._running.values():
            if gen.prefill_pos >= len(gen.prompt):
                work.decode[gen.seq_id] = gen.generated[-1]
        for gen in sorted(self._running.values(), key=lambda g: g.admitted_at):
            left = len(gen.prompt) - gen.prefill_pos
            if left <= 0 or budget <= 0:
                continue
            take = prefill_take(left, budget)
            if take == 0:
                continue
            work.prefill.append(PrefillChunk(gen.seq_id, gen.prompt[gen.prefill_pos:gen.prefill_pos + take],
                                             last=take == left))
            gen.prefill_pos += take
            budget -= take
        return work

    def _loop(self) -> None:
        idle_work = True
        while True:
            if idle_work and not self._stop and not self._waiting and not self._running:
                idle_work = self.engine.idle()
                self.heartbeat = time.monotonic()
                continue
            with self._cv:
                while not self._stop and not self._waiting and not self._running:
                    self.heartbeat = time.monotonic()
                    self._cv.wait(timeout=1.0)
                if self._stop:
                    break
                for gen in [g for g in self._running.values() if g.cancelled]:
                    self._finish(gen, None)  # before admitting, so a freed slot is used this step
                self._admit()
            self._publish_depth()
            if not self._running:
                continue
            work = self._plan()
            masks = self._masks_beside(work) if self.masks_beside_step else None
            try:
                logits = self.engine.step(work)
            except Exception as exc:  # an engine fault fails the batch, not the process
                log.exception("engine step failed for %s", self.model_id)
                self._join_masks(masks)
                for gen in list(self._running.values()):
                    self._finish(gen, "error", f"engine error: {type(exc).__name__}")
                continue
            if self.masks_beside_step:
                self._join_masks(masks)
            else:
                self._masks_here(work)
            self.steps += 1
            self.heartbeat = time.monotonic()
            self.metrics.steps.labels(self.model_id).inc()
            self.metrics.batch_size.labels(self.model_id).observe(len(work.decode) + len(work.prefill))
            self._consume(logits)
            self._publish_depth()
        for gen in list(self._running.values()) + list(self._waiting):
            gen._emit(TokenEvent(None, "error", "server shutting down"))

    def _constraints(self, work: StepInput) -> list[Constraint]:
        """The grammars of the sequences this step gives logits for."""
        ids = [*work.decode, *(c.seq_id for c in work.prefill if c.last)]
        return [g.constraint for g in (self._running.get(i) for i in ids) if g is not None and g.constraint]

    def _masks_beside(self, work: StepInput) -> Future | None:
        constraints = self._constraints(work)
        if not constraints:
            return None
        if self._masks is None:
            self._masks = MaskBatch()
        return self._masks.start(constraints)

    def _masks_here(self, work: StepInput) -> None:
        constraints = self._constraints(work)
        if constraints:
            took = MaskBatch.fill_here(constraints)
            self.metrics.mask_wait.labels(self.model_id).observe(took)
            self.metrics.mask_batch.labels(self.model_id).observe(took)

    def _join_masks(self, pending: Future | None) -> None:
        """Wait for the masks; only the time spent waiting here is on the batch's critical path."""
        if pending is None:
            return
        waited_from = time.perf_counter()
        try:
            computing = pending.result()
        except Exception:  # a broken matcher fails its sequence when it samples, not the batch
            log.exception("computing grammar masks failed for %s", self.model_id)
            computing = time.perf_counter() - waited_from
        self.metrics.mask_wait.labels(self.model_id).observe(time.perf_counter() - waited_from)
        self.metrics.mask_batch.labels(self.model_id).observe(computing)

    def _consume(self, logits: dict[int, np.ndarray]) -> None:
        now = time.monotonic()
        context = self.engine.context_length
        eos = set(self.engine.eos_token_ids)
        for seq_id, row in logits.items():
            gen = self._running.get(seq_id)
            if gen is None:
                continue
            c = gen.constraint
            try:
                choice = self._samplers[seq_id].choose(row, c.allowed() if c is not None else None)
                if c is not None and not c.accept(choice.token):
                    raise ValueError(f"the grammar refused token {choice.token}: {c.error}")
            except Exception as exc:  # e.g. non-finite logits: that sequence fails, the loop serves on
                log.exception("sampling failed for a sequence of %s", self.model_id)
                self._finish(gen, "error", f"sampling failed: {type(exc).__name__}")
                continue
            token = choice.token
            gen.generated.append(token)
            if gen.first_token_at is None:
                gen.first_token_at = now
                self.metrics.ttft.labels(self.model_id).observe(now - gen.admitted_at)
            self.metrics.tokens_generated.labels(self.model_id).inc()
            event = TokenEvent(token, logprob=choice.logprob, top=choice.top)
            if token in eos:
                self._finish(gen, "stop")
            elif c is not None and c.finished:
                gen._emit(event)
                self._finish(gen, "end")
            elif len(gen.generated) >= gen.max_tokens or len(gen.prompt) + len(gen.generated) >= context:
                gen._emit(event)
                self._finish(gen, "length")
            else:
                gen._emit(event)
