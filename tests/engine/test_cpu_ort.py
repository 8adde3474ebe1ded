"""The cpu-ort engine on the real store: chunking, batching and prefix reuse do not change the numbers."""

import numpy as np
import pytest

from appliance.engine.base import StepInput, prefill_take
from appliance.engine.cpu_ort import CpuOrtLlm
from appliance.engine.greedy import prefill_all
from appliance.store.manifest import Manifest

CHAT = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engine(default_store):
    m = Manifest.model_validate_json((default_store / CHAT / "manifest.json").read_text())
    return CpuOrtLlm(default_store / CHAT, m.engine, max_batch=6, context_length=256)


def _prefill(engine, sid, tokens, chunk):
    return prefill_all(engine, {sid: tokens}, chunk)[sid]


def test_chunked_prefill_equals_whole_prefill(engine):
    prompt = list(range(300, 340))
    whole = _prefill(engine, 1, prompt, 64)
    chunked = _prefill(engine, 2, prompt[:-1] + [prompt[-1] + 1], 7)  # different tail: no prefix reuse of all
    engine.release(1)
    engine.release(2)
    again = _prefill(engine, 3, prompt, 7)
    engine.release(3)
    assert np.array_equal(whole, again)
    assert not np.array_equal(whole, chunked)


def test_decode_is_batch_invariant(engine):
    prompts = {10 + i: list(range(500 + 13 * i, 520 + 17 * i)) for i in range(5)}
    alone = {}
    for sid, p in prompts.items():
        lg = _prefill(engine, sid, p, 16)
        tok = int(np.argmax(lg))
        seq = []
        for _ in range(6):
            lg = engine.step(StepInput(decode={sid: tok}))[sid]
            seq.append(lg)
            tok = int(np.argmax(lg))
        alone[sid] = seq
        engine.release(sid)
    # now all five together, admitted with different lengths, decoding as one batch
    firsts = {sid + 100: _prefill(engine, sid + 100, p, 5) for sid, p in prompts.items()}
    toks = {sid: int(np.argmax(lg)) for sid, lg in firsts.items()}
    together = {sid: [] for sid in toks}
    for _ in range(6):
        out = engine.step(StepInput(decode=toks))
        for sid, lg in out.items():
            together[sid].append(lg)
            toks[sid] = int(np.argmax(lg))
    for sid in prompts:
        for a, b in zip(alone[sid], together[sid + 100]):
            assert np.array_equal(a, b), "a sequence's logits changed when it ran inside a batch"
    for sid in together:
        engine.release(sid)


def test_prefix_reuse_gives_the_same_logits(engine):
    system = list(range(1000, 1040))
    first = _prefill(engine, 50, system + [7, 8, 9], 16)
    engine.release(50)
    reused = _prefill(engine, 51, system + [7, 8, 9], 16)
    assert engine.cache_stats().prefix_hits >= 1
    assert np.array_equal(first, reused)
    engine.release(51)


def test_context_overflow_is_refused(engine):
    with pytest.raises(ValueError, match="exceeds the context"):
        engine.admit(60, list(range(300)))


def test_prompt_split_never_ends_in_a_lone_token():
    for left in range(1, 40):
        for budget in range(2, 12):
            pos, chunks = 0, []
            while pos < left:
                take = prefill_take(left - pos, budget)
                assert take > 0 or left - pos >= 2
                if take == 0:
                    break
                chunks.append(take)
                pos += take
            assert sum(chunks) == left and all(c <= budget + 1 for c in chunks)
            assert left == 1 or min(chunks) >= 2
