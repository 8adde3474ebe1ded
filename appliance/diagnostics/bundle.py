"""What a bundle is: its index (what each collector gathered, how it went, every file with size and sha256).

A bundle is a tar of ``index.json`` and ``files/<collector>/<name>``,
redacted before it is written, listed for the admin, then gzip-compressed
and encrypted to the vendor's age key as ``<id>.tar.gz.age``.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
FILES_DIR = "files"
SUFFIX = ".tar.gz.age"


class CollectorOutcome(str, Enum):
    OK = "ok"
    FAILED = "failed"  # raised; the error is in the index
    TIMED_OUT = "timed-out"  # overran its time; whatever it would have gathered is missing


class BundleState(str, Enum):
    STAGED = "staged"  # collected and redacted on the box, waiting for the admin's review
    RELEASED = "released"  # encrypted to the vendor key; the plain copy is gone
    DISCARDED = "discarded"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleFile(_Model):
    path: str  # relative to files/
    collector: str
    size: int
    sha256: str


class CollectorRecord(_Model):
    name: str
    gathers: str
    outcome: CollectorOutcome
    seconds: float
    error: str | None = None
    files: list[str] = []


class RedactionReport(_Model):
    """How much each rule replaced; the originals stay on the box."""

    replaced: dict[str, int]
    distinct: dict[str, int]


class BundleIndex(_Model):
    format: int = FORMAT_VERSION
    id: str
    created_at: str
    box: str
    appliance_version: str
    collect_seconds: float
    collectors: list[CollectorRecord]
    files: list[BundleFile]
    redaction: RedactionReport

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def failed(self) -> list[CollectorRecord]:
        return [c for c in self.collectors if c.outcome is not CollectorOutcome.OK]
