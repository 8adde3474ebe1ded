"""Next-token choice for one sequence: logit processing, then greedy or seeded temperature / top-k / top-p.

Processing happens in OpenAI's order and on the sequence's own row:
``logit_bias`` is added (-100 bans a token outright), presence and
frequency penalties are subtracted for tokens this sequence already
generated, and a grammar mask (structured output) removes every token the
grammar does not allow. Log-probabilities, when asked for, are those of
this processed distribution at temperature 1, so they describe what the
sequence could have said, bias and mask included, and sum to one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

BAN = -100.0  # a logit_bias of -100 removes the token, as OpenAI documents it


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    seed: int | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None  # None: none; k: the chosen token's log-probability and the k most likely
    choice: int = 0  # which of n choices this is; with a seed, each choice draws its own stream

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def for_choice(self, index: int) -> SamplingParams:
        return replace(self, choice=index)


@dataclass
class Choice:
    token: int
    logprob: float | None = None
    top: list[tuple[int, float]] | None = None  # (token, logprob), most likely first


def unpack_mask(words: np.ndarray, vocab: int) -> np.ndarray:
    """A bitmask of 32-bit words (bit i of word j allows token 32*j+i) as a boolean row of ``vocab``."""
    return np.unpackbits(words.view(np.uint8), bitorder="little")[:vocab].view(bool)


class Sampler:
    def __init__(self, params: SamplingParams):
        self.params = params
        seed = params.seed
        if seed is not None and params.choice:
            self.rng = np.random.default_rng([seed, params.choice])
        else:
            self.rng = np.random.default_rng(seed)
        bias = params.logit_bias
        self._bias_ids = np.fromiter(bias.keys(), np.int64, len(bias))
        self._bias = np.fromiter(bias.values(), np.float64, len(bias))
        self._penalised = bool(params.presence_penalty or params.frequency_penalty)
        self._counts: dict[int, int] = {}

    @property
    def plain(self) -> bool:
        """No processing to do: the raw row goes straight to the draw."""
        return not (len(self._bias_ids) or self._penalised or self.params.logprobs is not None)

    def process(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
        """The row after bias, penalties and mask, as float64 (a copy; the engine's row is untouched)."""
        out = logits.astype(np.float64)
        if len(self._bias_ids):
            out[self._bias_ids] += self._bias
            out[self._bias_ids[self._bias <= BAN]] = -np.inf
        if self._penalised and self._counts:
            p = self.params
            ids = np.fromiter(self._counts.keys(), np.int64, len(self._counts))
            n = np.fromiter(self._counts.values(), np.float64, len(self._counts))
            out[ids] -= n * p.frequency_penalty + p.presence_penalty
        if allowed is not None:
            out[~allowed] = -np.inf
        if out.max() == -np.inf:
            raise ValueError("no token is allowed: the grammar and logit_bias together exclude every token")
        return out

    def choose(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> Choice:
        row = logits if self.plain and allowed is None else self.process(logits, allowed)
        token = self._draw(row)
        if self._penalised:
            self._counts[token] = self._counts.get(token, 0) + 1
        if self.params.logprobs is None:
            return Choice(token)
        shifted = row - row.max()
        lse = np.log(np.exp(shifted).sum())
        logp = shifted - lse
        k = self.params.logprobs
        top = None
        if k:
            idx = np.argpartition(-logp, k - 1)[:k] if k < logp.shape[0] else np.arange(logp.shape[0])
            idx = idx[np.lexsort((idx, -logp[idx]))]
            top = [(int(i), float(logp[i])) for i in idx if np.isfinite(logp[i])]  # masked tokens are not options
        return Choice(token, float(logp[token]), top)

    def __call__(self, logits: np.ndarray) -> int:
        return self.choose(logits).token

    def _draw(self, row: np.ndarray) -> int:
        p = self.params
        if p.greedy:
            return int(np.argmax(row))
        scaled = row.astype(np.float64) / p.temperature
        if p.top_k and p.top_k < scaled.shape[0]:
            kth = np.partition(scaled, -p.top_k)[-p.top_k]
            scaled = np.where(scaled >= kth, scaled, -np.inf)
        scaled -= scaled.max()
        probs = np.exp(scaled)
        probs /= probs.sum()
        if p.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cum = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cum, p.top_p) + 1)]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(probs.shape[0], p=probs))
