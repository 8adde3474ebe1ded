"""``appliance serve`` and ``appliance up``."""

from __future__ import annotations


def serve() -> None:
    """The API daemon."""
    raise NotImplementedError


def up() -> None:
    """The whole box on this machine."""
    raise NotImplementedError
