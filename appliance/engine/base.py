"""The one small interface every LLM backend implements.

A step runs some sequences prefilling a chunk of their prompt and some
decoding one token, against a KV cache whose memory is fixed at load, and
returns next-token logits. Nothing above this boundary knows the backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def prefill_take(left: int, budget: int) -> int:
    """How many of ``left`` prompt tokens to prefill now, given ``budget``; 0 means wait for the next step.

    A chunk of one token after a cached past runs the attention kernel's
    token-generation path instead of its prompt path, which rounds
    differently; with int8 activations that difference can change the
    first generated token. So a prompt's last chunk is never a lone token
    (unless the whole prompt is one token): the first token's logits then
    come from the same path however the prompt was split or reused.
    """
    take = min(left, budget)
    if left - take == 1:
        take = left  # one over budget now rather than a lone token next step
    if take == 1 and left > 1:
        return 0
    return take


@dataclass
class PrefillChunk:
    seq_id: int
    tokens: list[int]
    last: bool = False


@dataclass
class StepInput:
    prefill: list[PrefillChunk] = field(default_factory=list)
    decode: dict[int, int] = field(default_factory=dict)  # seq_id -> token fed this step


@dataclass
class CacheStats:
    slots: int
    slots_active: int
    tokens_capacity: int
    tokens_used: int
    prefix_hits: int
    prefix_tokens_reused: int


class LlmEngine(Protocol):
    max_batch: int
    context_length: int
    vocab_size: int
    eos_token_ids: list[int]

    def admit(self, seq_id: int, prompt: list[int]) -> int:
        """Give the sequence a cache slot; return how many prompt tokens are already cached."""

    def step(self, work: StepInput) -> dict[int, np.ndarray]:
        """Run one step; logits for each decoding sequence and each prefill whose chunk is its last."""

    def release(self, seq_id: int) -> None:
        """Free the sequence's slot at once; its cache stays for prefix reuse until overwritten."""

    def idle(self) -> bool:
        """Do one bounded piece of background work while nothing runs; True if more remains."""

    def cache_stats(self) -> CacheStats: ...
