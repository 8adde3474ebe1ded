"""Drive an engine directly, without the scheduler: prefill in chunks, then decode as one batch.

Used by the factory's parity checks and golden capture and by the box's
start-up self-test, so both run the same algorithm on the same engine.
"""

from __future__ import annotations

import numpy as np

from appliance.engine.base import PrefillChunk, StepInput, prefill_take


def prefill_all(engine, seqs: dict[int, list[int]], chunk: int) -> dict[int, np.ndarray]:
    """Prefill each sequence in chunks; the logits after each one's last prompt token."""
    out = {}
    for sid, ids in seqs.items():
        pos = engine.admit(sid, ids)
        while pos < len(ids):
            take = prefill_take(len(ids) - pos, chunk)
            part = ids[pos:pos + take]
            pos += take
            out.update(engine.step(StepInput(prefill=[PrefillChunk(sid, part, pos >= len(ids))])))
    return out


def decode_batch(engine, first: dict[int, np.ndarray], choose) -> dict[int, list[np.ndarray]]:
    """Decode all sequences as one batch; ``choose(sid, pos, logits)`` gives the next token or None to stop."""
    rows = {sid: [lg] for sid, lg in first.items()}
    feed = {}
    for sid, lg in first.items():
        tok = choose(sid, 0, lg)
        if tok is None:
            engine.release(sid)
        else:
            feed[sid] = tok
    while feed:
        out = engine.step(StepInput(decode=feed))
        nxt = {}
        for sid, lg in out.items():
            rows[sid].append(lg)
            tok = choose(sid, len(rows[sid]) - 1, lg)
            if tok is None:
                engine.release(sid)
            else:
                nxt[sid] = tok
        feed = nxt
    return rows


def engine_greedy(engine, prompts: list[list[int]], n_tokens: int, chunk: int, base_id: int = 1000,
                  stop_at_eos: bool = True) -> list[list[int]]:
    """Free-running greedy tokens for each prompt, all decoding as one batch."""
    seqs = {base_id + i: p for i, p in enumerate(prompts)}
    out: dict[int, list[int]] = {sid: [] for sid in seqs}
    eos = set(engine.eos_token_ids) if stop_at_eos else set()

    def choose(sid: int, _pos: int, lg: np.ndarray) -> int | None:
        tok = int(np.argmax(lg))
        out[sid].append(tok)
        return None if tok in eos or len(out[sid]) >= n_tokens else tok

    decode_batch(engine, prefill_all(engine, seqs, chunk), choose)
    return [out[sid] for sid in seqs]
