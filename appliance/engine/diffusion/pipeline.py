"""The text-to-image pipeline over the store's three ONNX engines, in numpy: no torch on the box.

CLIP text encoder once per request, then the denoising loop (one UNet run
per step, classifier-free guidance as one batch of unconditional and
conditional rows), then the VAE decoder. It mirrors diffusers'
``StableDiffusionPipeline`` step for step, so on the same initial noise it
gives the same image within the parity the factory recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from appliance.engine.cpu_ort import session_options
from appliance.engine.diffusion.schedulers import make_sampler
from appliance.store.manifest import DiffusionEngineConfig


class Cancelled(Exception):
    """The caller gave up on the image (its client went away); the loop stops between steps."""


class NoiseSource:
    """Seeded Gaussian noise: the initial latents first, then any noise the sampler adds, in that order.

    numpy's PCG64 generator, so a seed gives the same image on every run
    and every box with the same engines.
    """

    def __init__(self, seed: int):
        self.rng = np.random.Generator(np.random.PCG64(seed))

    def __call__(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.standard_normal(shape, dtype=np.float32)


def guidance_embedding(w: float, dim: int, rows: int) -> np.ndarray:
    """The guidance-scale embedding LCM-distilled UNets take as ``timestep_cond`` (diffusers' formula)."""
    half = dim // 2
    freqs = np.exp(np.arange(half, dtype=np.float32) * -(np.log(np.float32(10000.0)) / (half - 1)))
    emb = np.float32(w * 1000.0) * freqs[None, :]
    emb = np.concatenate([np.sin(emb), np.cos(emb)], axis=1)
    if dim % 2:
        emb = np.pad(emb, ((0, 0), (0, 1)))
    return np.repeat(emb.astype(np.float32), rows, axis=0)


def _session(path: Path, threads: int, optimized: bool) -> ort.InferenceSession:
    so = session_options(threads, spinning=False)  # threads idle between image steps leave chat the cores
    if not optimized:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtDiffusion:
    def __init__(self, model_dir: Path, cfg: DiffusionEngineConfig, tokenizer_file: str = "tokenizer.json",
                 threads: int | None = None, optimized: bool = True):
        self.cfg = cfg
        n = threads if threads is not None else cfg.threads
        self.text = _session(model_dir / cfg.text_encoder, n, optimized)
        self.unet = _session(model_dir / cfg.unet, n, optimized)
        self.vae = _session(model_dir / cfg.vae_decoder, n, optimized)
        self.unet_inputs = {i.name for i in self.unet.get_inputs()}
        self.tok = Tokenizer.from_file(str(model_dir / tokenizer_file))
        self.tok.enable_truncation(cfg.max_text_tokens)
        self.tok.enable_padding(length=cfg.max_text_tokens, pad_id=cfg.pad_token_id)
        self._counter = Tokenizer.from_file(str(model_dir / tokenizer_file))
        self._counter.no_truncation()
        self._counter.no_padding()

    def count_tokens(self, text: str) -> int:
        """Untruncated length with the start and end tokens, so the API can refuse a prompt CLIP would cut."""
        return len(self._counter.encode(text).ids)

    def token_ids(self, texts: list[str]) -> np.ndarray:
        return np.array([e.ids for e in self.tok.encode_batch(texts)], dtype=np.int64)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self.text.run(None, {"input_ids": self.token_ids(texts)})[0]

    def unet_step(self, sample: np.ndarray, t: float, context: np.ndarray, cond: np.ndarray | None) -> np.ndarray:
        feeds = {"sample": sample, "timestep": np.full((sample.shape[0],), t, dtype=np.float32),
                 "encoder_hidden_states": context}
        if cond is not None:
            feeds["timestep_cond"] = cond
        return self.unet.run(None, feeds)[0]

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents -> images [n, H, W, 3] in 0..1."""
        image = self.vae.run(None, {"latent": (latents / np.float32(self.cfg.vae_scaling_factor)).astype(np.float32)})[0]
        return np.clip(image / 2 + 0.5, 0.0, 1.0).transpose(0, 2, 3, 1)

    def generate(self, prompt: str, width: int, height: int, n: int = 1, seed: int = 0, steps: int | None = None,
                 guidance_scale: float | None = None, negative_prompt: str = "", scheduler: str | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``n`` images [n, H, W, 3] (float, 0..1) for ``prompt``; ``on_step(done, total)`` may raise Cancelled."""
        cfg = self.cfg
        steps = steps or cfg.steps
        gs = cfg.guidance_scale if guidance_scale is None else guidance_scale
        guided = gs > 1 and cfg.time_cond_proj_dim is None
        if guided and not cfg.guidance:
            raise ValueError("this engine was built without classifier-free guidance; use guidance_scale <= 1")
        sampler = make_sampler(cfg.scheduler, steps, scheduler)
        noise = NoiseSource(seed)
        f = cfg.vae_scale_factor
        latents = noise((n, cfg.latent_channels, height // f, width // f)) * np.float32(sampler.init_noise_sigma)
        if guided:
            emb = self.encode_text([negative_prompt, prompt])
            context = np.concatenate([np.repeat(emb[:1], n, 0), np.repeat(emb[1:], n, 0)])
        else:
            context = np.repeat(self.encode_text([prompt]), n, 0)
        cond = guidance_embedding(gs - 1, cfg.time_cond_proj_dim, n) if cfg.time_cond_proj_dim else None
        for i, t in enumerate(sampler.timesteps):
            x = np.concatenate([latents, latents]) if guided else latents
            out = self.unet_step(sampler.scale(x, i).astype(np.float32), float(t), context, cond)
            if guided:
                uncond, text = out[:n], out[n:]
                out = uncond + np.float32(gs) * (text - uncond)
            latents = sampler.step(out, i, latents, noise)
            if on_step is not None:
                on_step(i + 1, len(sampler.timesteps))
        return self.decode(latents)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """0..1 floats to 8-bit pixels, rounded as diffusers' ``numpy_to_pil`` does."""
    return (images * 255).round().astype(np.uint8)
