"""Schemas of ``index.json`` and each model's ``manifest.json``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
INDEX_FILE = "index.json"
SIGNATURE_FILE = "index.sig"
MANIFEST_FILE = "manifest.json"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FileEntry(_Model):
    path: str
    sha256: str
    size: int


class ParityFigures(_Model):
    """How far one engine stage is from the torch reference, on fixed inputs."""

    stage: str = Field(description="e.g. export-fp32, tuned-int4")
    precision: str
    prompts: int
    tokens_per_prompt: int = 0
    max_abs_logit_diff: float | None = None
    token_agreement: float | None = Field(
        default=None, description="teacher-forced: share of positions whose argmax equals the reference's"
    )
    greedy_prefix_agreement: float | None = Field(
        default=None, description="free-running: mean share of greedy tokens equal to the reference before divergence"
    )
    min_cosine: float | None = None
    component: str | None = Field(default=None, description="text-to-image: text_encoder, unet, vae_decoder or pipeline")
    shapes: list[str] = Field(default=[], description="text-to-image: the input shapes compared, e.g. 2x4x32x32")
    max_abs_diff: float | None = Field(default=None, description="text-to-image: max |engine - torch| over outputs")
    max_rel_diff: float | None = Field(default=None, description="text-to-image: max_abs_diff / max |torch output|")
    thresholds: dict[str, float] = {}
    passed: bool


class LlmEngineConfig(_Model):
    kind: Literal["decoder"] = "decoder"
    filename: str
    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    max_batch: int
    kv_dtype: Literal["fp32", "fp16"] = "fp32"
    past_key: str = "past_key_values.%d.key"
    past_value: str = "past_key_values.%d.value"
    present_key: str = "present.%d.key"
    present_value: str = "present.%d.value"
    eos_token_ids: list[int]
    bos_token_id: int | None = None
    prefill_chunk: int = 256
    threads: int = 0


class EmbeddingsEngineConfig(_Model):
    kind: Literal["encoder"] = "encoder"
    filename: str
    dimensions: int
    max_tokens: int
    max_batch: int
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    threads: int = 0


class DiffusionSchedulerConfig(_Model):
    """The noise schedule and sampler, as the source's scheduler config gave it (diffusers' field names)."""

    kind: Literal["euler", "ddim", "lcm"]
    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "scaled_linear"
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = False
    clip_sample: bool = False
    clip_sample_range: float = 1.0
    original_inference_steps: int = 50
    timestep_scaling: float = 10.0


class DiffusionEngineConfig(_Model):
    """A Stable-Diffusion-architecture pipeline: three ONNX engines, a CLIP tokenizer and a scheduler."""

    kind: Literal["diffusion"] = "diffusion"
    text_encoder: str = "text_encoder.onnx"
    unet: str = "unet.onnx"
    vae_decoder: str = "vae_decoder.onnx"
    max_text_tokens: int = 77
    pad_token_id: int
    text_hidden_size: int
    latent_channels: int = 4
    vae_scale_factor: int = Field(description="pixels per latent cell along each side")
    vae_scaling_factor: float
    time_cond_proj_dim: int | None = Field(default=None, description="set for LCM-distilled UNets (guidance embedding)")
    sizes: list[str] = Field(description="WIDTHxHEIGHT the engines were built and checked at; nothing else is served")
    max_images: int = Field(description="images per request, generated as one UNet batch")
    guidance: bool = Field(description="classifier-free guidance available (the UNet also runs at twice the batch)")
    guidance_scale: float
    steps: int
    max_steps: int
    scheduler: DiffusionSchedulerConfig
    threads: int = 0
    seeded_noise_model: bool = Field(
        default=False, description="the factory's small seeded pipeline: untrained weights, its images are noise")

    def size_pixels(self, size: str) -> tuple[int, int]:
        w, _, h = size.partition("x")
        return int(w), int(h)


class GoldenTest(_Model):
    """A fixed input and the output this exact engine gave at build time; re-run on the box."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    expected_tokens: list[int] | None = None
    computed_on: str | None = Field(default=None, description="where expected outputs were computed, when not on the "
                                    "build host's own CPU (e.g. under qemu-user with the SKU's CPU model)")
    input_texts: list[str] | None = None
    expected_embeddings: list[list[float]] | None = None
    min_cosine: float = 0.9999
    image_prompt: str | None = None
    image_size: str | None = None
    image_seed: int | None = None
    image_steps: int | None = None
    expected_thumbnail: list[float] | None = Field(
        default=None, description="text-to-image: the golden image's 8x8 block means per channel (0-255), row-major")
    max_thumbnail_diff: float = 2.0


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    model_id: str
    task: Literal["chat", "embeddings", "text-to-image"]
    precision: str
    sku: str
    backend: str
    fingerprint: dict = Field(description="the build host's SKU fingerprint")
    source: dict
    engine: LlmEngineConfig | EmbeddingsEngineConfig | DiffusionEngineConfig
    tokenizer: str = "tokenizer.json"
    chat_template: str | None = None
    files: list[FileEntry]
    tools: dict[str, str]
    parity: list[ParityFigures]
    golden: GoldenTest
    built_at: str
    build_seconds: float


class IndexEntry(_Model):
    id: str
    task: str
    manifest_sha256: str


class StoreIndex(_Model):
    schema_version: int = SCHEMA_VERSION
    box: str
    sku: str
    built_at: str
    signing_key_id: str
    models: list[IndexEntry]


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(model: BaseModel) -> bytes:
    """Stable bytes for hashing and signing."""
    return (json.dumps(model.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()
