"""Continuous-batching scheduler against a fake engine: admission, backpressure, chunked prefill, finishes, faults."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable

import numpy as np
import pytest
from wait import wait_until

from appliance.engine.base import CacheStats, StepInput
from appliance.engine.sampling import SamplingParams
from appliance.server.metrics import Metrics
from appliance.server.scheduler import Generation, QueueFull, Scheduler, TokenEvent

MODEL = "fake"
VOCAB = 64
EOS = 0
BAD = 60  # a prompt starting with this token makes the fake's admit() raise


def default_next(prompt: list[int], fed: list[int]) -> int:
    """A deterministic 'model': the next token depends on everything fed so far; never EOS."""
    return 1 + (sum(fed) * 31 + len(fed)) % (VOCAB - 5)


def reference(prompt: list[int], n: int, next_token: Callable = default_next) -> list[int]:
    """The tokens a greedy run of ``next_token`` produces, computed without the scheduler."""
    fed, out = list(prompt), []
    for _ in range(n):
        t = next_token(prompt, fed)
        out.append(t)
        if t == EOS:
            break
        fed.append(t)
    return out


class _Seq:
    def __init__(self, prompt: list[int], cached: int):
        self.prompt = list(prompt)
        self.fed = list(prompt[:cached])
        self.last_out: int | None = None

    @property
    def prefilled(self) -> bool:
        return len(self.fed) >= len(self.prompt)


class FakeEngine:
    """Implements LlmEngine; checks the step contract and records every plan (violations are collected, not raised,
    since the scheduler would turn an exception into an ordinary engine error)."""

    def __init__(self, max_batch: int = 4, context_length: int = 1024, next_token: Callable = default_next,
                 cached: Callable[[list[int]], int] | None = None):
        self.max_batch = max_batch
        self.context_length = context_length
        self.vocab_size = VOCAB
        self.eos_token_ids = [EOS]
        self.next_token = next_token
        self.cached = cached
        self.lock = threading.Lock()
        self.seqs: dict[int, _Seq] = {}
        self.prompts: dict[int, list[int]] = {}
        self.steps: list[StepInput] = []
        self.log: list[tuple[str, int]] = []  # ("admit"|"release"|"step", seq_id or step number)
        self.violations: list[str] = []
        self.hooks: dict[int, Callable[[], None]] = {}  # step number (1-based) -> called as that step starts
        self.fail_steps: set[int] = set()
        self.logits_override: Callable[[int, int], np.ndarray | None] | None = None  # (step, seq_id) -> row
        self.unchecked: set[int] = set()  # sequences whose sampler may pick other than the favoured token (masks)

    # -- LlmEngine ---------------------------------------------------------------------------------
    def admit(self, seq_id: int, prompt: list[int]) -> int:
        with self.lock:
            self.log.append(("admit", seq_id))
            if prompt and prompt[0] == BAD:
                raise ValueError("this prompt cannot be admitted")
            if seq_id in self.seqs:
                self.violations.append(f"seq {seq_id} admitted twice")
            if len(self.seqs) >= self.max_batch:
                self.violations.append(f"seq {seq_id} admitted with {len(self.seqs)} slots already taken")
            cached = self.cached(prompt) if self.cached else 0
            self.seqs[seq_id] = _Seq(prompt, cached)
            self.prompts[seq_id] = list(prompt)
            return cached

    def release(self, seq_id: int) -> None:
        with self.lock:
            self.log.append(("release", seq_id))
            self.seqs.pop(seq_id, None)  # like the real cache: releasing an unknown sequence is a no-op

    def idle(self) -> bool:
        return False

    def cache_stats(self) -> CacheStats:
        with self.lock:
            used = sum(len(s.fed) for s in self.seqs.values())
            return CacheStats(self.max_batch, len(self.seqs), self.max_batch * self.context_length, used, 0, 0)

    def step(self, work: StepInput) -> dict[int, np.ndarray]:
        with self.lock:
            self.steps.append(copy.deepcopy(work))
            n = len(self.steps)
            self.log.append(("step", n))
        hook = self.hooks.get(n)
        if hook is not None:
            hook()
        if n in self.fail_steps:
            raise RuntimeError("injected engine fault")
        with self.lock:
            return self._run(n, work)

    # -- the contract ------------------------------------------------------------------------------
    def _bad(self, n: int, msg: str) -> None:
        self.violations.append(f"step {n}: {msg}")

    def _run(self, n: int, work: StepInput) -> dict[int, np.ndarray]:
        prefill_ids = [c.seq_id for c in work.prefill]
        if len(set(prefill_ids)) != len(prefill_ids):
            self._bad(n, f"a sequence prefilled twice: {prefill_ids}")
        if set(prefill_ids) & set(work.decode):
            self._bad(n, "a sequence both prefills and decodes")
        for sid in [*prefill_ids, *work.decode]:
            if sid not in self.seqs:
                self._bad(n, f"seq {sid} is not admitted (or already released)")
                return {}
        should_decode = {sid for sid, s in self.seqs.items() if s.prefilled}
        if set(work.decode) != should_decode:
            self._bad(n, f"decoding {sorted(work.decode)} but {sorted(should_decode)} are ready to decode")
        out: dict[int, np.ndarray] = {}
        for sid, token in work.decode.items():
            s = self.seqs[sid]
            if token != s.last_out and sid not in self.unchecked:
                self._bad(n, f"seq {sid} fed {token}, but its last generated token was {s.last_out}")
            s.fed.append(token)
            if len(s.fed) > self.context_length:
                self._bad(n, f"seq {sid} fed past the context ({len(s.fed)} > {self.context_length})")
            out[sid] = self._logits(n, sid, s)
        for chunk in work.prefill:
            s = self.seqs[chunk.seq_id]
            start = len(s.fed)
            want = s.prompt[start:start + len(chunk.tokens)]
            if not chunk.tokens or chunk.tokens != want:
                self._bad(n, f"seq {chunk.seq_id} chunk {chunk.tokens} is not prompt[{start}:] {want}")
            s.fed.extend(chunk.tokens)
            if chunk.last != s.prefilled:
                self._bad(n, f"seq {chunk.seq_id} chunk last={chunk.last} but prefilled={s.prefilled}")
            if chunk.last:
                out[chunk.seq_id] = self._logits(n, chunk.seq_id, s)
        return out

    def _logits(self, n: int, sid: int, s: _Seq) -> np.ndarray:
        if self.logits_override is not None:
            row = self.logits_override(n, sid)
            if row is not None:
                return row
        token = self.next_token(s.prompt, s.fed)
        s.last_out = token
        row = np.zeros(VOCAB, np.float32)
        row[token] = 30.0  # so decisive that even temperature-1 sampling picks it (odds ~ 1e-11 per draw)
        return row

    # -- helpers for assertions --------------------------------------------------------------------
    def chunks(self, n: int) -> list[tuple[int, int]]:
        """(seq_id, chunk length) of step ``n``'s prefill, in plan order."""
        return [(c.seq_id, len(c.tokens)) for c in self.steps[n - 1].prefill]

    def steps_with(self, seq_id: int) -> list[int]:
        return [i + 1 for i, w in enumerate(self.steps)
                if seq_id in w.decode or any(c.seq_id == seq_id for c in w.prefill)]

    def index(self, entry: tuple[str, int]) -> int:
        return self.log.index(entry)


def run(coro_fn: Callable, timeout: float = 20.0):
    """Run an async test body; the timeout only guards against a hung scheduler."""
    return asyncio.run(asyncio.wait_for(coro_fn(), timeout))


def make_gen(prompt: list[int], max_tokens: int = 8, temperature: float = 0.0) -> Generation:
    return Generation(list(prompt), max_tokens, SamplingParams(temperature=temperature), asyncio.get_running_loop())


async def drain(gen: Generation) -> tuple[list[int], TokenEvent]:
    """All tokens of a generation and its final event."""
    tokens = []
    while True:
        ev = await gen.events.get()
        if ev.finish_reason is not None:
            assert ev.token is None, ev
            return tokens, ev
        assert ev.token is not None, ev
        tokens.append(ev.token)


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"model": MODEL})


class Harness:
    def __init__(self, engine: FakeEngine, max_queue: int = 16, prefill_chunk: int = 8, masks_beside_step: bool = True):
        self.engine = engine
        self.metrics = Metrics()
        self.sched = Scheduler(MODEL, engine, self.metrics, max_queue=max_queue, prefill_chunk=prefill_chunk,
                               masks_beside_step=masks_beside_step)

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc) -> None:
        self.sched.stop()
        assert not self.sched._thread.is_alive(), "scheduler thread did not stop"
        assert not self.engine.violations, "\n".join(self.engine.violations)


# -- admission and backpressure ---------------------------------------------------------------------

def test_admits_up_to_max_batch_in_arrival_order_and_the_rest_wait():
    async def body():
        engine = FakeEngine(max_batch=2)
        with Harness(engine) as h:
            prompts = [[10 + i, 20 + i, 30 + i] for i in range(5)]
            gens = [h.sched.submit(make_gen(p, max_tokens=3)) for p in prompts]
            assert (h.sched.queue_depth, h.sched.running) == (5, 0)
            assert sample(h.metrics, "appliance_queue_depth") == 5
            h.sched.start()
            results = [await drain(g) for g in gens]
            for p, (tokens, ev) in zip(prompts, results):
                assert (tokens, ev.finish_reason) == (reference(p, 3), "length")
            admitted = [sid for what, sid in engine.log if what == "admit"]
            assert admitted == [g.seq_id for g in gens]  # FIFO
            assert engine.chunks(1) == [(gens[0].seq_id, 3), (gens[1].seq_id, 3)]  # exactly max_batch in the batch
            # the third request starts only once a slot was released
            assert engine.index(("release", gens[0].seq_id)) < engine.index(("admit", gens[2].seq_id))
            wait_until(lambda: sample(h.metrics, "appliance_running_sequences") == 0, 10, "running gauge to drop")
            assert sample(h.metrics, "appliance_queue_depth") == 0
            assert sample(h.metrics, "appliance_generated_tokens_total") == 15
            assert sample(h.metrics, "appliance_engine_steps_total") == len(engine.steps)

    run(body)


def test_queue_full_beyond_max_queue_with_retry_after():
    async def body():
        engine = FakeEngine(max_batch=2)
        with Harness(engine, max_queue=3) as h:
            gens = [h.sched.submit(make_gen([1, 2, 3], max_tokens=2)) for _ in range(3)]
            rejected = make_gen([4, 5, 6])
            with pytest.raises(QueueFull):
                h.sched.submit(rejected)
            assert h.sched.queue_depth == 3 and rejected.seq_id == 0
            assert h.sched.retry_after() == 1  # 3 waiting // 2 slots, at least 1
            h.sched.start()
            for g in gens:
                assert (await drain(g))[1].finish_reason == "length"
            # room again once the queue drained
            later = h.sched.submit(make_gen([4, 5, 6], max_tokens=2))
            assert await drain(later) == (reference([4, 5, 6], 2), TokenEvent(None, "length", None))
            assert len(engine.prompts) == 4  # the rejected request never reached the engine

    run(body)


@pytest.mark.parametrize(("waiting", "max_batch", "expected"), [(0, 4, 1), (11, 2, 5), (100, 2, 30)])
def test_retry_after_scales_with_the_queue_and_is_clamped(waiting, max_batch, expected):
    async def body():
        h = Harness(FakeEngine(max_batch=max_batch), max_queue=100)
        for _ in range(waiting):
            h.sched.submit(make_gen([1, 2]))
        assert h.sched.retry_after() == expected

    run(body)


# -- chunked prefill and fairness ---------------------------------------------------------------------

def _check_prefill_budget(engine: FakeEngine, chunk: int) -> None:
    for n, work in enumerate(engine.steps, 1):
        total = sum(len(c.tokens) for c in work.prefill)
        prompts = {c.seq_id: engine.prompts[c.seq_id] for c in work.prefill}
        # one over the budget only to finish a prompt rather than leave it a lone token
        assert total <= chunk or (total == chunk + 1 and work.prefill[-1].last), (n, engine.chunks(n))
        for c in work.prefill:
            assert len(c.tokens) > 1 or len(prompts[c.seq_id]) == 1, f"step {n}: lone-token chunk {c}"


def test_long_prompts_are_chunked_oldest_first_while_running_sequences_decode_every_step():
    async def body():
        engine = FakeEngine(max_batch=4)
        with Harness(engine, prefill_chunk=4) as h:
            a_prompt, b_prompt, c_prompt = [1, 2], list(range(3, 14)), list(range(20, 26))  # 2, 11, 6 tokens
            a = h.sched.submit(make_gen(a_prompt, max_tokens=12))
            late: list[Generation] = []
            loop = asyncio.get_running_loop()

            def arrive() -> None:  # B then C arrive while A is decoding
                late.append(h.sched.submit(Generation(b_prompt, 4, SamplingParams(0.0), loop)))
                late.append(h.sched.submit(Generation(c_prompt, 4, SamplingParams(0.0), loop)))

            engine.hooks[2] = arrive
            h.sched.start()
            ta, ea = await drain(a)
            b, c = late
            tb, eb = await drain(b)
            tc, ec = await drain(c)
            assert (ta, tb, tc) == (reference(a_prompt, 12), reference(b_prompt, 4), reference(c_prompt, 4))
            A, B, C = a.seq_id, b.seq_id, c.seq_id
            assert [engine.chunks(n) for n in range(1, 8)] == [
                [(A, 2)], [], [(B, 4)], [(B, 4)],
                [(B, 3)],  # B's last 3 tokens; the 1 left over is not spent on a lone token of C
                [(C, 4)], [(C, 2)],
            ]
            # A decoded in every step from its first token to its last, never stalled by B's or C's prefill
            assert engine.steps_with(A) == list(range(1, 13))
            assert all(A in engine.steps[n - 1].decode for n in range(2, 13))
            assert all(B in engine.steps[n - 1].decode for n in range(6, 9))
            _check_prefill_budget(engine, 4)

    run(body)


@pytest.mark.parametrize(("length", "chunks"), [(3, [3]), (8, [4, 4]), (9, [4, 5]), (10, [4, 4, 2]), (13, [4, 4, 5])])
def test_prompt_split_never_ends_in_a_lone_token(length, chunks):
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine, prefill_chunk=4) as h:
            prompt = list(range(1, length + 1))
            g = h.sched.submit(make_gen(prompt, max_tokens=2))
            h.sched.start()
            assert await drain(g) == (reference(prompt, 2), TokenEvent(None, "length", None))
            assert [c for n in range(1, len(chunks) + 1) for _, c in engine.chunks(n)] == chunks
            _check_prefill_budget(engine, 4)

    run(body)


def test_many_concurrent_prompts_respect_the_prefill_budget_and_all_finish_correctly():
    async def body():
        rng = np.random.default_rng(7)
        engine = FakeEngine(max_batch=5)
        with Harness(engine, max_queue=64, prefill_chunk=6) as h:
            prompts = [[int(t) for t in rng.integers(1, VOCAB, int(rng.integers(1, 20)))] for _ in range(24)]
            limits = [int(rng.integers(1, 9)) for _ in prompts]
            gens = [h.sched.submit(make_gen(p, m)) for p, m in zip(prompts, limits)]
            h.sched.start()
            for g, p, m in zip(gens, prompts, limits):
                assert await drain(g) == (reference(p, m), TokenEvent(None, "length", None))
            _check_prefill_budget(engine, 6)
            assert max(len(w.decode) + len(w.prefill) for w in engine.steps) <= 5

    run(body)


def test_cached_prefix_is_not_prefilled_again_and_is_counted():
    async def body():
        engine = FakeEngine(max_batch=2, cached=lambda prompt: 4 if len(prompt) >= 6 else 0)
        with Harness(engine, prefill_chunk=4) as h:
            prompt = list(range(1, 11))
            g = h.sched.submit(make_gen(prompt, max_tokens=3))
            h.sched.start()
            assert await drain(g) == (reference(prompt, 3), TokenEvent(None, "length", None))
            assert [engine.steps[0].prefill[0].tokens, engine.steps[1].prefill[0].tokens] == [prompt[4:8], prompt[8:]]
            assert g.cached_tokens == 4
            assert sample(h.metrics, "appliance_prefix_cache_reused_tokens_total") == 4

    run(body)


# -- how sequences end -------------------------------------------------------------------------------

def test_eos_finishes_with_stop_and_is_not_emitted_as_a_token():
    def next_token(prompt, fed):
        return EOS if len(fed) - len(prompt) == 2 else default_next(prompt, fed)

    async def body():
        engine = FakeEngine(next_token=next_token)
        with Harness(engine) as h:
            g = h.sched.submit(make_gen([5, 6, 7], max_tokens=50))
            h.sched.start()
            tokens, ev = await drain(g)
            assert tokens == reference([5, 6, 7], 2) and EOS not in tokens
            assert ev.finish_reason == "stop"
            assert ("release", g.seq_id) in engine.log
            assert len(engine.steps) == 3

    run(body)


def test_max_tokens_finishes_with_length_after_exactly_max_tokens():
    async def body():
        engine = FakeEngine()
        with Harness(engine) as h:
            g = h.sched.submit(make_gen([5, 6, 7], max_tokens=5))
            one = h.sched.submit(make_gen([8, 9], max_tokens=1))
            h.sched.start()
            assert await drain(g) == (reference([5, 6, 7], 5), TokenEvent(None, "length", None))
            assert await drain(one) == (reference([8, 9], 1), TokenEvent(None, "length", None))
            assert engine.steps_with(one.seq_id) == [1]  # its single token came from the prefill
            assert ("release", g.seq_id) in engine.log and ("release", one.seq_id) in engine.log

    run(body)


def test_context_limit_finishes_with_length_without_feeding_past_the_context():
    async def body():
        engine = FakeEngine(context_length=10)
        with Harness(engine) as h:
            g = h.sched.submit(make_gen(list(range(1, 7)), max_tokens=100))
            h.sched.start()
            assert await drain(g) == (reference(list(range(1, 7)), 4), TokenEvent(None, "length", None))
            # the fake engine records feeding past context_length as a violation (checked on exit)

    run(body)


# -- cancellation ------------------------------------------------------------------------------------

def test_cancel_frees_the_slot_at_the_next_step_boundary_and_a_waiting_request_is_admitted():
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine) as h:
            a = h.sched.submit(make_gen([1, 2, 3], max_tokens=1000))
            b = h.sched.submit(make_gen([4, 5, 6], max_tokens=2))
            engine.hooks[3] = a.cancel  # the client goes away while step 3 runs
            h.sched.start()
            assert await drain(b) == (reference([4, 5, 6], 2), TokenEvent(None, "length", None))
            assert engine.steps_with(a.seq_id) == [1, 2, 3]
            assert engine.index(("step", 3)) < engine.index(("release", a.seq_id)) < engine.index(("step", 4))
            assert engine.chunks(4) == [(b.seq_id, 3)]
            tokens = []
            while not a.events.empty():
                ev = a.events.get_nowait()
                assert ev.finish_reason != "error", ev
                tokens.append(ev.token)
            assert tokens == reference([1, 2, 3], len(tokens)) and len(tokens) <= 3

    run(body)


def test_request_cancelled_while_waiting_never_reaches_the_engine():
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine) as h:
            a = h.sched.submit(make_gen([1, 2], max_tokens=3))
            b = h.sched.submit(make_gen([3, 4], max_tokens=3))
            c = h.sched.submit(make_gen([5, 6], max_tokens=3))
            b.cancel()
            h.sched.start()
            assert (await drain(a))[1].finish_reason == "length"
            assert await drain(c) == (reference([5, 6], 3), TokenEvent(None, "length", None))
            assert ("admit", b.seq_id) not in engine.log
            assert h.sched.queue_depth == 0

    run(body)


# -- faults ------------------------------------------------------------------------------------------

def test_engine_step_error_fails_the_running_batch_and_the_loop_serves_on():
    async def body():
        engine = FakeEngine(max_batch=2)
        engine.fail_steps = {3}
        with Harness(engine) as h:
            a = h.sched.submit(make_gen([1, 2], max_tokens=100))
            b = h.sched.submit(make_gen([3, 4], max_tokens=100))
            waiting = h.sched.submit(make_gen([5, 6], max_tokens=3))
            h.sched.start()
            for g, p in ((a, [1, 2]), (b, [3, 4])):
                tokens, ev = await drain(g)
                assert tokens == reference(p, 2)  # steps 1 and 2; step 3 failed
                assert (ev.finish_reason, ev.error) == ("error", "engine error: RuntimeError")
                assert engine.index(("step", 3)) < engine.index(("release", g.seq_id))
            assert await drain(waiting) == (reference([5, 6], 3), TokenEvent(None, "length", None))
            later = h.sched.submit(make_gen([7, 8], max_tokens=3))
            assert await drain(later) == (reference([7, 8], 3), TokenEvent(None, "length", None))

    run(body)


def test_admit_error_fails_only_that_request_and_frees_its_place():
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine) as h:
            bad = h.sched.submit(make_gen([BAD, 1, 2], max_tokens=3))
            good = h.sched.submit(make_gen([1, 2, 3], max_tokens=3))
            h.sched.start()
            tokens, ev = await drain(bad)
            assert tokens == [] and ev.finish_reason == "error"
            assert ev.error == "could not start generation: ValueError"
            assert await drain(good) == (reference([1, 2, 3], 3), TokenEvent(None, "length", None))
            assert engine.steps_with(bad.seq_id) == []

    run(body)


def test_stop_ends_running_and_waiting_requests_with_an_error_event():
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine) as h:
            a = h.sched.submit(make_gen([1, 2], max_tokens=10**6))
            b = h.sched.submit(make_gen([3, 4], max_tokens=3))
            stopper = threading.Thread(target=h.sched.stop)

            def stop_now() -> None:  # the shutdown lands while step 2 runs
                stopper.start()
                wait_until(lambda: h.sched._stop, 10, "stop() to set its flag")

            engine.hooks[2] = stop_now
            h.sched.start()
            tokens, ev = await drain(a)
            assert tokens == reference([1, 2], 2)
            assert (ev.finish_reason, ev.error) == ("error", "server shutting down")
            assert await drain(b) == ([], TokenEvent(None, "error", "server shutting down"))
            stopper.join(10)
            assert not h.sched._thread.is_alive()
            assert ("admit", b.seq_id) not in engine.log
            assert len(engine.steps) == 2

    run(body)


# -- faults that once stopped the loop -----------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_logits_fail_that_request_and_the_loop_serves_on():
    async def body():
        engine = FakeEngine(max_batch=2)
        with Harness(engine) as h:
            bad = h.sched.submit(make_gen([1, 2], max_tokens=5, temperature=1.0))
            engine.logits_override = lambda n, sid: np.full(VOCAB, np.inf, np.float32) if sid == bad.seq_id else None
            h.sched.start()
            wait_until(lambda: ("release", bad.seq_id) in engine.log or not h.sched._thread.is_alive(), 10,
                       "the bad request to end or the loop to die")
            assert h.sched._thread.is_alive(), "the scheduler thread died"
            assert (await drain(bad))[1].finish_reason == "error"
            engine.logits_override = None
            later = h.sched.submit(make_gen([3, 4], max_tokens=2))
            assert await drain(later) == (reference([3, 4], 2), TokenEvent(None, "length", None))

    run(body)


def test_prefill_chunk_of_one_still_makes_progress():
    async def body():
        engine = FakeEngine(max_batch=1)
        with Harness(engine, prefill_chunk=1) as h:
            g = h.sched.submit(make_gen([1, 2, 3, 4], max_tokens=2))
            h.sched.start()
            wait_until(lambda: ("release", g.seq_id) in engine.log or len(engine.steps) > 200, 10,
                       "the request to finish or the loop to spin")
            assert ("release", g.seq_id) in engine.log, f"{len(engine.steps)} steps, none prefilled anything"

    run(body)


# -- grammar masks and the n choices of one request ----------------------------------------------------

@pytest.mark.parametrize("beside", [True, False], ids=["masks-beside-the-step", "masks-after-the-step"])
def test_constrained_and_free_sequences_share_the_batch_and_each_gets_its_own_output(beside):
    """The fake favours tokens that spell nonsense; the mask makes the constrained one valid JSON, the free one is
    untouched, and the masks were computed beside the steps."""
    import json

    import jsonschema
    import tiny_vocab

    assert (VOCAB, EOS) == (tiny_vocab.SIZE, tiny_vocab.EOS)
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "s": {"type": "string", "maxLength": 4}},
              "required": ["n", "s"]}
    grammar = tiny_vocab.grammars().json_schema(schema)

    async def body():
        engine = FakeEngine(max_batch=4)
        with Harness(engine, masks_beside_step=beside) as h:
            loop = asyncio.get_running_loop()
            free = h.sched.submit(make_gen([1, 2, 3], max_tokens=20))
            bound = h.sched.submit(Generation([4, 5, 6], 60, SamplingParams(temperature=0.0), loop,
                                              constraint=grammar.start()))
            engine.unchecked.add(bound.seq_id)
            h.sched.start()
            tokens, ev = await drain(bound)
            assert ev.finish_reason == "end", ev  # the closing brace leaves nothing to say: ended, no EOS drawn
            jsonschema.validate(json.loads(tiny_vocab.decode(tokens)), schema)
            assert await drain(free) == (reference([1, 2, 3], 20), TokenEvent(None, "length", None))
            assert sample_metric(h.metrics, "appliance_grammar_mask_seconds_count") == len(tokens)  # one per token

    run(body)


def sample_metric(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"model": MODEL})


def test_other_choices_wait_for_the_first_to_prefill_and_do_not_block_others():
    async def body():
        engine = FakeEngine(max_batch=4)
        with Harness(engine, prefill_chunk=4) as h:
            loop = asyncio.get_running_loop()
            prompt = list(range(1, 11))  # three steps of prefill at 4 a step
            params = SamplingParams(temperature=0.0)
            lead = h.sched.submit(Generation(prompt, 3, params, loop))
            others = [h.sched.submit(Generation(prompt, 3, params.for_choice(i), loop, follows=lead)) for i in (1, 2)]
            stranger = h.sched.submit(make_gen([30, 31], max_tokens=3))
            h.sched.start()
            for g in [lead, *others]:
                assert await drain(g) == (reference(prompt, 3), TokenEvent(None, "length", None))
            assert (await drain(stranger))[1].finish_reason == "length"
            lead_done = max(n for n in engine.steps_with(lead.seq_id) if engine.steps[n - 1].prefill
                            and any(c.seq_id == lead.seq_id and c.last for c in engine.steps[n - 1].prefill))
            for g in others:
                assert engine.index(("admit", g.seq_id)) > engine.index(("step", lead_done))
            assert engine.index(("admit", stranger.seq_id)) < engine.index(("step", lead_done))

    run(body)


def test_a_first_choice_that_fails_to_start_does_not_hold_the_others_back():
    async def body():
        engine = FakeEngine(max_batch=2)
        with Harness(engine) as h:
            loop = asyncio.get_running_loop()
            lead = h.sched.submit(Generation([BAD, 1, 2], 3, SamplingParams(0.0), loop))
            lead.cancel()
            other = h.sched.submit(Generation([BAD + 1, 1, 2], 2, SamplingParams(0.0), loop, follows=lead))
            h.sched.start()
            assert await drain(other) == (reference([BAD + 1, 1, 2], 2), TokenEvent(None, "length", None))

    run(body)
