"""What a health check says: a status and a reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Status(IntEnum):
    OK = 0
    DEGRADED = 1
    FAILED = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class Result:
    status: Status
    reason: str
    values: dict = field(default_factory=dict)

    @classmethod
    def ok(cls, reason: str = "ok", **values) -> "Result":
        return cls(Status.OK, reason, values)

    @classmethod
    def degraded(cls, reason: str, **values) -> "Result":
        return cls(Status.DEGRADED, reason, values)

    @classmethod
    def failed(cls, reason: str, **values) -> "Result":
        return cls(Status.FAILED, reason, values)
