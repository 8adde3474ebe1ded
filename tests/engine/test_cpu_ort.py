"""The cpu-ort engine on the real store: chunking, batching and prefix reuse do not change the numbers."""

import numpy as np
import pytest

from appliance.engine.base import StepInput, prefill_take
from appliance.engine.cpu_ort import CpuOrtLlm
from appliance.engine.greedy import decode_batch, prefill_all
from appliance.store.manifest import Manifest

CHAT = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def engine(default_store):
    m = Manifest.model_validate_json((default_store / CHAT / "manifest.json").read_text())
    return CpuOrtLlm(default_store / CHAT, m.engine, max_batch=6, context_length=256)


def _prefill(engine, sid, tokens, chunk):
    return prefill_all(engine, {sid: tokens}, chunk)[sid]


class Recording:
    """An engine as prefill_all and decode_batch see it, recording the prefill chunks and the reused prefix."""

    def __init__(self, engine: CpuOrtLlm):
        self.engine = engine
        self.eos_token_ids = engine.eos_token_ids
        self.reused: list[int] = []
        self.chunks: list[int] = []

    def admit(self, seq_id: int, prompt: list[int]) -> int:
        n = self.engine.admit(seq_id, prompt)
        self.reused.append(n)
        return n

    def step(self, work: StepInput) -> dict[int, np.ndarray]:
        self.chunks += [len(c.tokens) for c in work.prefill]
        return self.engine.step(work)

    def release(self, seq_id: int) -> None:
        self.engine.release(seq_id)


LONG_LEN, CONTINUATION = 401, 16


@pytest.fixture(scope="module")
def long_prompt(default_store) -> list[int]:
    """401 tokens of text: long enough to split many ways, and 401 = 16*25 + 1 exercises the no-lone-token rule."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_store / CHAT / "tokenizer.json"))
    things = ["lamp", "chair", "kettle", "radio", "clock", "vase", "mirror", "drum", "book", "rug"]
    text = " ".join(f"Item {i}: the {things[i % 10]} is on shelf {i * 7 % 13} next to the {things[i * 3 % 10]}."
                    for i in range(60))
    ids = tok.encode(text).ids
    assert len(ids) >= LONG_LEN
    return ids[:LONG_LEN]


def _prefill_and_continue(store, prompt: list[int], chunk: int) -> tuple[Recording, list[np.ndarray], list[int]]:
    """On a fresh engine (no cached prefix to reuse), prefill in ``chunk``-token steps, then decode greedily.

    Returns the recording, the logits after the last prompt token and after
    each generated token, and the greedy tokens.
    """
    m = Manifest.model_validate_json((store / CHAT / "manifest.json").read_text())
    engine = Recording(CpuOrtLlm(store / CHAT, m.engine, max_batch=1, context_length=512))
    tokens: list[int] = []

    def choose(_sid: int, _pos: int, logits: np.ndarray) -> int | None:
        tokens.append(int(np.argmax(logits)))
        return None if len(tokens) >= CONTINUATION else tokens[-1]

    rows = decode_batch(engine, prefill_all(engine, {1: prompt}, chunk), choose)[1]
    return engine, rows, tokens


@pytest.fixture(scope="module")
def whole(default_store, long_prompt):
    engine, rows, tokens = _prefill_and_continue(default_store, long_prompt, len(long_prompt))
    assert engine.reused == [0] and engine.chunks == [LONG_LEN]
    return rows, tokens


@pytest.mark.parametrize("chunk, expected", [
    (16, [16] * 24 + [17]),
    (64, [64] * 6 + [17]),
    (100, [100] * 3 + [101]),
])
def test_chunked_prefill_equals_whole_prefill(default_store, long_prompt, whole, chunk, expected):
    """Splitting a long prompt into chunks attends over the cached past exactly as one whole prefill does.

    Bit-identical, not merely close: every chunk is prefilled by the
    attention kernel's prompt path (prefill_take never leaves a lone last
    token), and int8 activation quantization in MatMulNBits is per row, so
    the rows a chunk holds do not change any row's numbers.
    """
    engine, rows, tokens = _prefill_and_continue(default_store, long_prompt, chunk)
    assert engine.reused == [0], "a prefix was reused: the prompt was not prefilled in chunks"
    assert engine.chunks == expected
    whole_rows, whole_tokens = whole
    assert np.array_equal(rows[0], whole_rows[0]), \
        f"last-position logits differ by up to {np.abs(rows[0] - whole_rows[0]).max()}"
    assert tokens == whole_tokens
    assert len(rows) == len(whole_rows) == CONTINUATION
    for a, b in zip(rows, whole_rows):
        assert np.array_equal(a, b)


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
