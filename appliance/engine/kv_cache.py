"""A slot KV cache with prefix reuse, sized once when the engine loads.

Each slot holds one sequence's keys and values at positions 0..len-1, per
layer, as ``[slots, kv_heads, context, head_dim]`` arrays. Decoding
sequences always occupy slots ``0..n_decoding-1`` so one batched call can
bind a contiguous view; a sequence that starts or stops decoding swaps
places with the slot at the boundary.

Finished slots keep their tokens: a new prompt that shares a prefix with a
free slot takes that slot and skips prefilling the prefix (llama-server's
slot reuse); a prefix held by a running slot is copied, which costs far less
than recomputing it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from appliance.engine.base import CacheStats

MIN_REUSE = 16  # shorter common prefixes are not worth a copy


@dataclass
class Slot:
    tokens: list[int] = field(default_factory=list)
    seq_id: int | None = None
    decoding: bool = False
    last_used: float = 0.0


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class SlotKvCache:
    def __init__(self, layers: int, slots: int, kv_heads: int, context: int, head_dim: int, dtype=np.float32):
        shape = (slots, kv_heads, context, head_dim)
        self.keys = [np.zeros(shape, dtype) for _ in range(layers)]
        self.values = [np.zeros(shape, dtype) for _ in range(layers)]
        self.slots = [Slot() for _ in range(slots)]
        self.warm = [False] * slots  # pages of this slot already faulted in
        self.context = context
        self.n_decoding = 0
        self.seq_slot: dict[int, int] = {}
        self.prefix_hits = 0
        self.prefix_tokens_reused = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.keys) + sum(a.nbytes for a in self.values)

    def _copy(self, src: int, dst: int, n: int) -> None:
        for arrs in (self.keys, self.values):
            for a in arrs:
                a[dst, :, :n] = a[src, :, :n]

    def _swap(self, i: int, j: int) -> None:
        if i == j:
            return
        n = max(len(self.slots[i].tokens), len(self.slots[j].tokens))
        for arrs in (self.keys, self.values):
            for a in arrs:
                tmp = a[i, :, :n].copy()
                a[i, :, :n] = a[j, :, :n]
                a[j, :, :n] = tmp
        self.slots[i], self.slots[j] = self.slots[j], self.slots[i]
        for k in (i, j):
            if self.slots[k].seq_id is not None:
                self.seq_slot[self.slots[k].seq_id] = k

    def admit(self, seq_id: int, prompt: list[int]) -> int:
        """Claim a slot for a new sequence; return the number of prompt tokens already cached there."""
        if seq_id in self.seq_slot:
            raise ValueError(f"sequence {seq_id} already has a slot")
        free = [i for i, s in enumerate(self.slots) if s.seq_id is None]
        if not free:
            raise RuntimeError("no free KV slot; the scheduler admitted more sequences than max_batch")
        usable = len(prompt) - 2  # feed at least two tokens, so the prompt path makes the logits (see prefill_take)
        best_free, best_free_len = None, 0
        for i in free:
            n = min(common_prefix(self.slots[i].tokens, prompt), usable)
            if n > best_free_len:
                best_free, best_free_len = i, n
        best_src, best_src_len = None, 0
        for i, s in enumerate(self.slots):
            if s.seq_id is not None:
                n = min(common_prefix(s.tokens, prompt), usable)
                if n > best_src_len:
                    best_src, best_src_len = i, n
        if best_free is not None and best_free_len >= max(best_src_len, MIN_REUSE):
            slot, reused = best_free, best_free_len
        else:
            # least recently used, warm slots first (a cold one must fault its memory in)
            slot = min(free, key=lambda i: (not self.warm[i], self.slots[i].last_used))
            reused = 0
            if best_src is not None and best_src_len >= MIN_REUSE:
                self._copy(best_src, slot, best_src_len)
                reused = best_src_len
        self.warm[slot] = True
        s = self.slots[slot]
        s.tokens = list(prompt[:reused])
        s.seq_id, s.decoding, s.last_used = seq_id, False, time.monotonic()
        self.seq_slot[seq_id] = slot
        if reused:
            self.prefix_hits += 1
            self.prefix_tokens_reused += reused
        return reused

    def warm_next(self) -> bool:
        """Fault in one never-used free slot's memory; False when all are warm.

        The arrays are allocated lazily by the OS, so a slot's first prefill
        would pay for faulting in ~100 MB (it made a 100-token prompt 3-4x
        slower). Done while the scheduler is idle, one slot at a time, it
        costs requests nothing and keeps start-up fast.
        """
        for i, warm in enumerate(self.warm):
            if not warm and self.slots[i].seq_id is None:
                for a in self.keys + self.values:
                    a[i].fill(0)
                self.warm[i] = True
                return True
        return False

    def slot_of(self, seq_id: int) -> int:
        return self.seq_slot[seq_id]

    def start_decoding(self, seq_id: int) -> None:
        i = self.seq_slot[seq_id]
        if self.slots[i].decoding:
            return
        self._swap(i, self.n_decoding)
        self.slots[self.n_decoding].decoding = True
        self.n_decoding += 1

    def release(self, seq_id: int) -> None:
        i = self.seq_slot.pop(seq_id, None)
        if i is None:
            return
        if self.slots[i].decoding:
            self._swap(i, self.n_decoding - 1)
            i = self.n_decoding - 1
            self.n_decoding -= 1
        self.seq_slot.pop(seq_id, None)  # the swap re-registered it
        s = self.slots[i]
        s.seq_id, s.decoding, s.last_used = None, False, time.monotonic()

    def decoding_order(self) -> list[int]:
        """Sequence ids of the decoding slots, in slot order."""
        return [self.slots[i].seq_id for i in range(self.n_decoding)]  # type: ignore[misc]

    def stats(self) -> CacheStats:
        active = [s for s in self.slots if s.seq_id is not None]
        return CacheStats(
            slots=len(self.slots),
            slots_active=len(active),
            tokens_capacity=len(self.slots) * self.context,
            tokens_used=sum(len(s.tokens) for s in active),
            prefix_hits=self.prefix_hits,
            prefix_tokens_reused=self.prefix_tokens_reused,
        )
