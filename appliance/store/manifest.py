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


class GoldenTest(_Model):
    """A fixed input and the output this exact engine gave at build time; re-run on the box."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    expected_tokens: list[int] | None = None
    input_texts: list[str] | None = None
    expected_embeddings: list[list[float]] | None = None
    min_cosine: float = 0.9999


class Manifest(_Model):
    schema_version: int = SCHEMA_VERSION
    model_id: str
    task: Literal["chat", "embeddings", "text-to-image"]
    precision: str
    sku: str
    backend: str
    fingerprint: dict = Field(description="the build host's SKU fingerprint")
    source: dict
    engine: LlmEngineConfig | EmbeddingsEngineConfig
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
