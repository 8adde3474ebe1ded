"""A 64-token byte-level vocabulary that spells JSON, for grammar tests without a model store.

Token 0 is the end-of-sequence token; the rest are single characters
(JSON punctuation, underscore, a space, lower-case letters, digits, a few capitals),
so any short JSON text over them is one token per character.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from appliance.engine.grammar import Grammars

EOS = 0
SIZE = 64
CHARS = list('{}[]":,_') + ["\u0120"] + list("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRST")  # \u0120 is ' '
VOCAB = {"<eos>": EOS, **{ch: i + 1 for i, ch in enumerate(CHARS[:SIZE - 1])}}


def tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(VOCAB, []))
    tok.add_special_tokens(["<eos>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def grammars() -> Grammars:
    return Grammars(tokenizer().to_str(), SIZE, [EOS])


def encode(text: str) -> list[int]:
    return tokenizer().encode(text).ids


def decode(ids: list[int]) -> str:
    return tokenizer().decode([i for i in ids if i != EOS])
