"""Constrained decoding: a JSON schema or a Lark grammar becomes a per-sequence token mask (llguidance).

llguidance is Rust with no Python dependencies and no torch; it builds
its lexer lazily, so a schema costs about a millisecond to compile and
each mask tens of microseconds (docs/structured-output.md has the
evidence and the alternatives). ``MaskBatch`` computes the masks of every
constrained sequence of a step in one call that releases the GIL, so the
scheduler runs it on a worker thread while the engine step runs.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np

from appliance.engine.sampling import unpack_mask

# Python's json.dumps layout: what small models have seen most, and no room for runaway whitespace
JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalItems", "not", "if", "then", "else", "contains", "additionalProperties",
               "propertyNames", "unevaluatedItems")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def closed(schema: Any) -> Any:
    """The schema with objects that list their properties taking no others, unless it says otherwise.

    JSON Schema lets an object carry any extra property by default; a
    small model given that freedom invents keys. OpenAI's strict mode
    requires ``additionalProperties: false`` and xgrammar's strict mode
    assumes it; so does the box.
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: closed(sub) for name, sub in out[key].items()}
    for key in _SCHEMA_ONE:
        if key in out:
            out[key] = [closed(s) for s in out[key]] if isinstance(out[key], list) else closed(out[key])
    for key in _SCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [closed(s) for s in out[key]]
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out \
            and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    return out


class GrammarError(ValueError):
    """The schema or grammar cannot be compiled; the message names the problem."""


@dataclass(frozen=True)
class Grammar:
    """A compiled, validated grammar; ``start()`` gives each sequence its own state."""

    source: str
    vocab: llguidance.LLTokenizer
    vocab_size: int

    def start(self) -> Constraint:
        return Constraint(llguidance.LLMatcher(self.vocab, self.source, log_level=0), self.vocab_size)


class Constraint:
    """One sequence's position in its grammar and the mask of tokens allowed next."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int):
        self.matcher = matcher
        self.vocab_size = vocab_size
        self.words = np.full((1, (vocab_size + 31) // 32), -1, np.int32)

    def allowed(self) -> np.ndarray:
        """The last computed mask as a boolean row (``MaskBatch`` or ``compute`` fills it).

        A matcher that failed (a grammar too complex for its limits, a
        string no token can spell) leaves no valid mask: that is an error
        for its sequence, never a mask that silently allows everything.
        """
        if self.matcher.is_error():
            raise ValueError(f"the grammar failed: {self.matcher.get_error().splitlines()[0]}")
        return unpack_mask(self.words[0], self.vocab_size)

    def compute(self) -> None:
        self.matcher.unsafe_compute_mask_ptr(self.words.ctypes.data, self.words.nbytes)

    def accept(self, token: int) -> bool:
        return self.matcher.consume_token(token)

    @property
    def error(self) -> str:
        return self.matcher.get_error() if self.matcher.is_error() else ""

    @property
    def finished(self) -> bool:
        """The grammar is complete and allows nothing more (not even the end-of-sequence token)."""
        return self.matcher.is_stopped()


class Grammars:
    """Compiles grammars against one model's vocabulary (built once per model: ~0.3 s)."""

    def __init__(self, tokenizer_json: str, vocab_size: int, eos_token_ids: list[int]):
        self.vocab = llguidance.LLTokenizer(tokenizer_json, n_vocab=vocab_size, eos_token=list(eos_token_ids))
        self.vocab_size = vocab_size

    def _compile(self, source: str) -> Grammar:
        problem = llguidance.LLMatcher.validate_grammar(source, self.vocab)
        if problem:
            raise GrammarError(problem.strip().splitlines()[0] if problem.strip() else problem)
        return Grammar(source, self.vocab, self.vocab_size)

    def json_schema(self, schema: dict[str, Any] | bool | None) -> Grammar:
        """Any JSON object when ``schema`` is None (response_format json_object), else that schema (``closed``)."""
        if schema is None:
            schema = {"type": "object"}
        try:
            source = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(closed(schema)), defaults=JSON_LAYOUT)
        except ValueError as exc:
            raise GrammarError(str(exc)) from None
        return self._compile(source)

    def lark(self, grammar: str) -> Grammar:
        return self._compile(llguidance.LLMatcher.grammar_from_lark(grammar))

    def token_bytes(self, token: int) -> bytes:
        return self.vocab.decode_bytes([token])


class MaskBatch:
    """Masks for many sequences at once, on a worker thread (the call releases the GIL)."""

    def __init__(self, threads: int | None = None):
        self._executor = llguidance.LLExecutor(num_threads=threads) if threads else llguidance.LLExecutor()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grammar-masks")
        self._buffer = np.zeros((0, 0), np.int32)
        self._lock = threading.Lock()

    def start(self, constraints: list[Constraint]) -> Future:
        """Begin computing the next mask of each constraint; the future's result is the seconds it took."""
        return self._worker.submit(self._fill, list(constraints))

    @staticmethod
    def fill_here(constraints: list[Constraint]) -> float:
        """Compute the masks on the calling thread, one after another; the seconds it took.

        No thread to wake: on a box whose engine threads spin on every
        core between steps, waking one costs more than the masks themselves.
        """
        started = time.perf_counter()
        for c in constraints:
            c.compute()
        return time.perf_counter() - started

    def _fill(self, constraints: list[Constraint]) -> float:
        started = time.perf_counter()
        if not constraints:
            return 0.0
        words = constraints[0].words.shape[1]
        with self._lock:
            if self._buffer.shape[0] < len(constraints) or self._buffer.shape[1] != words:
                self._buffer = np.zeros((max(len(constraints), 16), words), np.int32)
            buf = self._buffer
            self._executor.unsafe_compute_mask_ptr([(c.matcher, i) for i, c in enumerate(constraints)],
                                                   buf.ctypes.data, words * 4, buf.shape[0])
            for i, c in enumerate(constraints):
                c.words[0] = buf[i]
        return time.perf_counter() - started

    def close(self) -> None:
        self._worker.shutdown(wait=False)
