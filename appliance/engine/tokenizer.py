"""Tokenizer, chat template and streaming detokenizer, without transformers on the box."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.sandbox
from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream


class NoChatTemplate(ValueError):
    """The model has no chat template, so it takes plain prompts only."""


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


class ChatTokenizer:
    def __init__(self, tokenizer_file: Path, chat_template: str | None, special_tokens: dict[str, str] | None = None):
        self.tok = Tokenizer.from_file(str(tokenizer_file))
        self.special = special_tokens or {}
        self._template = None
        if chat_template:
            env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._template = env.from_string(chat_template)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def render_chat(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if self._template is None:
            raise NoChatTemplate("this model has no chat template")
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt, **self.special)

    def token_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)


class TextStream:
    """Token ids in, text deltas out, holding back incomplete UTF-8 (tokenizers' own DecodeStream)."""

    def __init__(self, tokenizer: ChatTokenizer):
        self._tok = tokenizer.tok
        self._stream = DecodeStream(skip_special_tokens=True)

    def push(self, token: int) -> str:
        return self._stream.step(self._tok, token) or ""
