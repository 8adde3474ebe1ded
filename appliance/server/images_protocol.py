"""OpenAI's image generation protocol as the box speaks it: the request, its plan on one model, the response.

What the engines were not built for is refused with a 400 naming the
parameter and what is allowed: sizes other than the built ones, more
images than one batch, image URLs (nothing is stored on the box, images
come back inline as base64 PNG), and options that would change the image
but that the box does not honour. ``seed`` and ``steps`` are extensions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from appliance.server.openai_errors import ApiError
from appliance.server.protocol import OpenAIRequest
from appliance.store.manifest import DiffusionEngineConfig

MAX_SEED = (1 << 63) - 1
NOISE_NOTICE = ("This is the factory's small seeded Stable Diffusion pipeline: its weights were never trained, so "
                "every image it makes is noise. To get pictures, build the box from a real Stable Diffusion 1.x/2.x "
                "or SD-Turbo folder in diffusers layout: in appliance.toml give the model source = { kind = "
                "\"diffusers-folder\", path = \"/path/to/folder\" }, then run appliance build models.")


def image_card_metadata(cfg: DiffusionEngineConfig) -> dict:
    """What /v1/models says about an image model: what it serves, and, for the seeded one, that it draws noise."""
    return {"sizes": cfg.sizes, "max_images": cfg.max_images, "steps": cfg.steps, "max_steps": cfg.max_steps,
            "scheduler": cfg.scheduler.kind, "guidance_scale": cfg.guidance_scale,
            "seeded_noise_model": cfg.seeded_noise_model, "notice": NOISE_NOTICE if cfg.seeded_noise_model else None}


def _refuse(param: str, message: str) -> ApiError:
    return ApiError(400, message, param, "unsupported_value")


class ImageGenerationRequest(OpenAIRequest):
    prompt: str = Field(min_length=1, max_length=4000)
    model: str | None = None
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    quality: Literal["standard", "hd", "auto", "low", "medium", "high"] | None = None
    style: Literal["vivid", "natural"] | None = None
    background: Literal["transparent", "opaque", "auto"] | None = None
    user: str | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="extension: the same seed, prompt, size, "
                             "n and steps give the same images")
    steps: int | None = Field(default=None, ge=1, description="extension: denoising steps (default: the model's)")

    def plan(self, model_id: str, cfg: DiffusionEngineConfig, seed: int) -> ImagePlan:
        """The one generation this request asks of ``cfg``, or a 400 naming what does not fit."""
        if self.response_format == "url":
            raise _refuse("response_format", "this box returns images inline only (nothing is stored on it to link "
                          "to); use response_format 'b64_json'")
        if self.output_format not in (None, "png"):
            raise _refuse("output_format", "this box returns PNG images only; use output_format 'png' or leave it out")
        if self.quality not in (None, "standard", "auto"):
            raise _refuse("quality", f"quality {self.quality!r} is not offered; the box has one quality per model "
                          "(set steps to trade time for detail)")
        if self.style is not None:
            raise _refuse("style", "style is not supported by this box; leave it out")
        if self.background not in (None, "auto", "opaque"):
            raise _refuse("background", "transparent backgrounds are not supported; leave background out")
        size = cfg.sizes[0] if self.size in (None, "auto") else self.size
        if size not in cfg.sizes:
            raise ApiError(400, f"size {self.size!r} is not one model {model_id} was built for; sizes: "
                                f"{', '.join(cfg.sizes)}", "size", "invalid_value")
        n = self.n or 1
        if n > cfg.max_images:
            raise ApiError(400, f"n is {n}; model {model_id} makes at most {cfg.max_images} images per request",
                           "n", "invalid_value")
        steps = self.steps or cfg.steps
        if steps > cfg.max_steps:
            raise ApiError(400, f"steps is {steps}; model {model_id} takes at most {cfg.max_steps}", "steps",
                           "invalid_value")
        width, height = cfg.size_pixels(size)
        return ImagePlan(prompt=self.prompt, size=size, width=width, height=height, n=n, seed=seed, steps=steps)


@dataclass(frozen=True)
class ImagePlan:
    prompt: str
    size: str
    width: int
    height: int
    n: int
    seed: int
    steps: int


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: None = None
    seed: int = Field(description="extension: the seed that reproduces this request's images")


class ImagesResponse(BaseModel):
    created: int = Field(default_factory=lambda: int(time.time()))
    data: list[ImageData]
    size: str
    output_format: Literal["png"] = "png"
