"""Slot bookkeeping: decoding slots stay contiguous, prefixes are reused, data moves with its sequence."""

import numpy as np
import pytest

from appliance.engine.kv_cache import MIN_REUSE, SlotKvCache


def _cache(slots=4):
    return SlotKvCache(layers=2, slots=slots, kv_heads=1, context=64, head_dim=2)


def _fill(cache, seq_id, tokens):
    slot = cache.slot_of(seq_id)
    cache.slots[slot].tokens.extend(tokens)
    for a in cache.keys + cache.values:
        a[slot, :, : len(cache.slots[slot].tokens)] = seq_id


def test_decoding_sequences_are_contiguous_and_keep_their_data():
    c = _cache()
    for sid in (1, 2, 3):
        c.admit(sid, [sid] * 5)
        _fill(c, sid, [sid] * 5)
    c.start_decoding(3)
    c.start_decoding(1)
    assert c.decoding_order() == [3, 1]
    c.release(3)
    assert c.decoding_order() == [1]
    slot = c.slot_of(1)
    assert slot == 0 and np.all(c.keys[0][0, :, :5] == 1)
    assert 3 not in c.seq_slot


def test_free_slot_prefix_is_reused_and_running_prefix_is_copied():
    c = _cache()
    system = list(range(100, 100 + MIN_REUSE + 4))
    c.admit(1, system + [1, 2, 3])
    _fill(c, 1, system + [1, 2, 3])
    # a running sequence's prefix is copied into the newcomer's slot
    reused = c.admit(2, system + [7, 8])
    assert reused == len(system)
    assert np.all(c.keys[1][c.slot_of(2), :, : len(system)] == 1)
    c.release(1)
    # a finished slot keeps its tokens: the next matching prompt takes that slot
    reused = c.admit(3, system + [1, 2, 9])
    assert reused == len(system) + 1 and c.prefix_hits == 2


def test_short_prefix_and_whole_prompt_are_not_reused():
    c = _cache()
    c.admit(1, [5, 6, 7])
    _fill(c, 1, [5, 6, 7])
    c.release(1)
    assert c.admit(2, [5, 6, 7, 8]) == 0  # shorter than MIN_REUSE
    long = list(range(40))
    c.admit(3, long)
    _fill(c, 3, long)
    c.release(3)
    assert c.admit(4, long) == len(long) - 2  # the last two prompt tokens are always fed (prefill_take)


def test_admit_beyond_capacity_is_an_error():
    c = _cache(slots=1)
    c.admit(1, [1, 2])
    with pytest.raises(RuntimeError, match="no free KV slot"):
        c.admit(2, [1, 2])
