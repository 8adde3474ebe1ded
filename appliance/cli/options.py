"""CLI options made from the settings fields, so a shared option is declared once (in ``appliance.settings``).

A command names the fields it takes; it receives the loaded settings object
instead of one argument per flag, and its help text is the field's description.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from typing import Callable, Literal

import typer

from appliance.settings import BoxSettings, load_settings

SERVE_OPTIONS = ("store", "state_dir", "host", "port", "tls", "tls_cert", "tls_key", "trusted_key", "max_queue",
                 "prefill_chunk", "threads", "image_concurrency", "image_threads", "log_level")


def _cli_type(annotation: object) -> type:
    """The one concrete type typer parses for a field (``Path | None`` -> Path, ``Literal[...]`` -> str)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return type(args[0])
    if origin in (typing.Union, types.UnionType):
        return _cli_type(args[0])
    return annotation if isinstance(annotation, type) else str


def _option(cls: type[BoxSettings], name: str) -> inspect.Parameter:
    field = cls.model_fields[name]
    kind = _cli_type(field.annotation)
    flag = "--" + name.replace("_", "-")
    if kind is bool:
        flag = f"{flag}/--no-{name.replace('_', '-')}"
    choices = typing.get_args(field.annotation) if typing.get_origin(field.annotation) is Literal else ()
    notes = [f"one of {', '.join(map(str, choices))}"] if choices else []
    if field.default is not None and "default" not in (field.description or ""):
        notes.append(f"default: {field.default}")
    help_text = (field.description or name) + (f" ({'; '.join(notes)})" if notes else "")
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typing.Optional[kind],
                             default=typer.Option(None, flag, help=help_text, show_default=False))


def settings_command(cls: type[BoxSettings], *names: str) -> Callable:
    """Decorate ``fn(settings, **own_options)``: typer sees the named settings fields as options too."""

    def wrap(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn, include_extras=True)  # typer reads its Option() from a resolved Annotated
        own = [p.replace(annotation=hints.get(p.name, p.annotation))
               for p in inspect.signature(fn).parameters.values() if p.name != "settings"]

        @functools.wraps(fn)
        def command(**kwargs: object) -> object:
            values = {n: kwargs.pop(n) for n in names}
            return fn(load_settings(cls, **values), **kwargs)

        command.__signature__ = inspect.Signature([*own, *(_option(cls, n) for n in names)])  # type: ignore[attr-defined]
        return command

    return wrap

