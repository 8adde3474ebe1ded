"""The image recipe: what `image-build/` declares, read once, with the digests that key the build caches."""

from __future__ import annotations

import hashlib
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import ApplianceError

REPO = Path(__file__).resolve().parents[3]
RECIPE_DIR = REPO / "image-build"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
UUID_NAMESPACE = uuid.UUID("6c1f3a52-4b2e-4c55-9d07-0f6a0e9b5d11")


@dataclass(frozen=True)
class Recipe:
    """Everything under `image-build/` that decides what goes into an image."""

    dir: Path
    packages: tuple[str, ...]

    @classmethod
    def load(cls, directory: Path = RECIPE_DIR) -> "Recipe":
        listing = directory / "packages.txt"
        if not listing.is_file():
            raise ApplianceError(f"{listing}: image recipe not found; run from a checkout that has image-build/")
        lines = (line.split("#", 1)[0].strip() for line in listing.read_text().splitlines())
        return cls(directory, tuple(sorted(p for p in lines if p)))

    @property
    def base_key(self) -> str:
        """Keys the cached debootstrap root: the suite, the mirror and the package list."""
        return _digest([SUITE, MIRROR, *self.packages])[:16]

    @property
    def digest(self) -> str:
        """Every recipe file, so that a change of any of them shows in the build report."""
        files = sorted(p for p in self.dir.rglob("*") if p.is_file())
        h = hashlib.sha256()
        for p in files:
            h.update(str(p.relative_to(self.dir)).encode() + b"\0" + p.read_bytes() + b"\0")
        return h.hexdigest()

    def partition_uuid(self, box_name: str, label: str) -> str:
        """Partition UUIDs are derived from the box name, so the boot entries can name them before the disk exists."""
        return str(uuid.uuid5(UUID_NAMESPACE, f"{box_name}/{label}"))


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def source_date_epoch() -> int:
    """Timestamps inside the image: SOURCE_DATE_EPOCH, else the last commit's time, so rebuilds match."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    try:
        out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"], capture_output=True, text=True,
                             check=True).stdout.strip()
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0


def git_commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
