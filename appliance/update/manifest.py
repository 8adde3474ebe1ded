"""What an update bundle says about itself, signed by the vendor: the version, what it may replace, and the digest
and size of every file it carries."""

from __future__ import annotations

from typing import Annotated, Literal

from packaging.version import InvalidVersion, Version
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The layout of /var/lib/appliance that this code reads and writes. A release that changes it raises this number,
# migrates forward on first start, and its bundle says so: the slot it replaces could not read the state after it.
STATE_SCHEMA = 1
FORMAT = 1
FileName = Literal["root.squashfs", "vmlinuz", "initrd.img"]


def _pep440(value: str) -> str:
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version (PEP 440, e.g. 0.2.0 or 0.2.0+abc1234)") from None
    return value


VersionStr = Annotated[str, AfterValidator(_pep440)]


class BundleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: FileName
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class UpdateManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal[1] = FORMAT
    version: VersionStr
    min_version: VersionStr = Field(description="the oldest running version this bundle may be applied on")
    box_name: str
    sku: str
    store_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    state_schema: int = Field(ge=1)
    created: int = Field(ge=0, description="SOURCE_DATE_EPOCH of the build")
    files: list[BundleFile]

    def file(self, name: str) -> BundleFile:
        return next(f for f in self.files if f.name == name)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)
