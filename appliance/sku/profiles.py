"""SKU profiles, kept as TOML data beside this module: one file per SKU."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from appliance.errors import ApplianceError

PROFILE_DIR = Path(__file__).with_name("profiles")


class Match(BaseModel):
    model_config = ConfigDict(extra="forbid")
    arch: str | None = None
    cpu_flags: list[str] = []
    gpu_name_contains: str | None = None
    compute_capability: str | None = None
    min_driver: str | None = None


class Tuning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    graph_optimization: Literal["basic", "extended", "all"] = "all"
    int4_block_size: int = 32
    int4_accuracy_level: int = 4
    kv_dtype: Literal["fp32", "fp16"] = "fp32"
    threads: int = 0
    prefill_chunk: int = 256
    builder_flags: list[str] = []
    builder_optimization_level: int | None = None
    workspace_gib: int | None = None


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_batch: int
    max_context: int


class ImageLimits(BaseModel):
    """The shapes text-to-image engines are built and checked at on this SKU; a model spec picks from them."""

    model_config = ConfigDict(extra="forbid")
    sizes: list[str] = Field(description="WIDTHxHEIGHT a text-to-image model may be built for")
    max_images: int = Field(ge=1, description="images per request, generated as one UNet batch")
    guidance: bool = Field(description="classifier-free guidance: the UNet also runs at twice the batch")
    max_steps: int = Field(ge=1, description="denoising steps a request may ask for")


class ParityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fp32_max_abs_logit: float
    fp32_min_token_agreement: float
    int8_min_token_agreement: float
    int4_min_token_agreement: float
    embeddings_min_cosine: float
    embeddings_int8_min_cosine: float
    image_component_max_rel: float = Field(description="fp32 engine vs torch: max |diff| / max |torch output|")
    image_max_abs_pixel: float = Field(description="whole pipeline vs diffusers on the same noise, pixels in 0..1")

    def min_token_agreement(self, precision: str) -> float:
        return {
            "int4": self.int4_min_token_agreement,
            "int8": self.int8_min_token_agreement,
        }.get(precision, self.fp32_min_token_agreement)


class CpuEmulation(BaseModel):
    """How the factory runs this SKU's CPU kernels on a build host whose CPU is another kind.

    onnxruntime picks its kernels from the CPU it runs on: a golden self-test recorded with a host's
    AVX-512 kernels is not what an AVX2 box computes, and greedy decoding can part ways at a near tie.
    On such a host the chat golden is run under qemu-user with this CPU model instead.
    """

    model_config = ConfigDict(extra="forbid")
    qemu_cpu: str = Field(description="`qemu-x86_64 -cpu` model whose instruction set is this SKU's")
    when_host_has: list[str] = Field(description="host CPU flags that make onnxruntime choose other kernels")


class SkuProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str
    accelerator: Literal["cpu", "nvidia"]
    backend: str
    match: Match
    precisions: dict[str, list[str]] = Field(default_factory=dict)
    tuning: Tuning
    limits: Limits
    image: ImageLimits
    parity: ParityThresholds
    emulation: CpuEmulation | None = None


def known_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


@cache
def load_profile(name: str) -> SkuProfile:
    path = PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ApplianceError(f"unknown SKU {name!r}; known: {', '.join(known_profiles())}")
    return SkuProfile.model_validate(tomllib.loads(path.read_text()))
