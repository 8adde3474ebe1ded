"""The build report (report.json beside the image): what was built, from what, how big, how long."""

from __future__ import annotations

from pydantic import BaseModel


class Partition(BaseModel):
    label: str
    type: str
    uuid: str
    offset: int
    size: int


class Package(BaseModel):
    name: str
    version: str


class Artifact(BaseModel):
    name: str
    size: int
    sha256: str


class BuildReport(BaseModel):
    box_name: str
    sku: str
    version: str
    git_commit: str
    source_date_epoch: int
    recipe_digest: str
    test_access: bool
    kernel: str
    kernel_cmdline: str
    store_digest: str
    store_bytes: int
    root_squashfs_bytes: int
    partitions: list[Partition]
    artifacts: list[Artifact]
    debian_packages: list[Package]
    python_packages: list[Package]
    stages_seconds: dict[str, float]
    cache_hits: dict[str, bool]
    seconds: float
