"""Errors a person can act on: what happened, where, and what to do."""

from __future__ import annotations


class ApplianceError(Exception):
    """An expected failure; the CLI prints it as one line and exits non-zero."""

    exit_code = 2


class SpecError(ApplianceError):
    """The box spec (appliance.toml) is wrong."""


class SourceError(ApplianceError):
    """A model source is missing, corrupt or not what the spec says."""


class ParityError(ApplianceError):
    """An exported engine drifts from its torch reference beyond the SKU's thresholds."""


class StoreError(ApplianceError):
    """The model store is tampered, incomplete, unsigned or built for another SKU."""

    exit_code = 3


class UpdateError(ApplianceError):
    """An update bundle is refused (unsigned, changed, a downgrade, for another box) or cannot be applied."""

    exit_code = 4
