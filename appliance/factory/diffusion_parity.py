"""Parity of text-to-image engines against torch, as recorded numbers.

Per component: the ONNX engine and its torch module on the same inputs, at
every size the SKU builds (text encoder: token ids; UNet: latents,
timestep, text states, at the guided batch; VAE decoder: latents).
Whole pipeline: the box's numpy loop against diffusers'
``StableDiffusionPipeline`` given the same initial noise (and, for LCM,
the same per-step noise), compared in pixels (0..1).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np

from appliance.engine.diffusion.pipeline import NoiseSource, OrtDiffusion
from appliance.engine.similarity import cosine_rows
from appliance.errors import ParityError
from appliance.factory.export_diffusion import reference_scheduler
from appliance.store.manifest import DiffusionEngineConfig, ParityFigures

PARITY_PROMPTS = ["a photo of a cat sitting on a red chair", "an oil painting of the sea at sunset, highly detailed",
                  "portrait of an old man with a beard, studio lighting"]
GOLDEN_PROMPT = "a red apple on a wooden table"
GOLDEN_SEED = 1234
UNET_TIMESTEP = 500.0


def golden_steps(cfg: DiffusionEngineConfig) -> int:
    """Few steps, so the start-up self-test and the monitor's probe stay cheap."""
    return min(cfg.steps, 4)


def _figure(component: str, stage: str, precision: str, pairs: list[tuple[np.ndarray, np.ndarray]],
            shapes: list[str], max_rel: float | None, min_cosine: float | None) -> ParityFigures:
    diff = max(float(np.abs(got - ref).max()) for got, ref in pairs)
    scale = max(float(np.abs(ref).max()) for _, ref in pairs) or 1.0
    cos = min(float(cosine_rows(got.reshape(len(got), -1), ref.reshape(len(ref), -1)).min()) for got, ref in pairs)
    passed = (max_rel is None or diff / scale <= max_rel) and (min_cosine is None or cos >= min_cosine)
    thresholds = {k: v for k, v in (("max_rel_diff", max_rel), ("min_cosine", min_cosine)) if v is not None}
    return ParityFigures(stage=stage, precision=precision, component=component, prompts=len(pairs), shapes=shapes,
                         max_abs_diff=round(diff, 8), max_rel_diff=round(diff / scale, 8), min_cosine=round(cos, 6),
                         thresholds=thresholds, passed=passed)


def component_parity(engine: OrtDiffusion, pipe, cfg: DiffusionEngineConfig, stage: str, precision: str,
                     max_rel: float | None = None, min_cosine: float | None = None) -> list[ParityFigures]:
    """One figure per component, each over every size the engine serves."""
    import torch

    ids = engine.token_ids(PARITY_PROMPTS + [""])
    want = pipe.tokenizer(PARITY_PROMPTS + [""], padding="max_length", max_length=cfg.max_text_tokens,
                          truncation=True).input_ids
    if ids.tolist() != want:
        raise ParityError(f"the box's tokenizer.json tokenizes differently from the source's tokenizer "
                          f"({ids[0][:8].tolist()} vs {want[0][:8]}); the engine is not shipped")
    with torch.inference_mode():
        text_ref = pipe.text_encoder(torch.from_numpy(ids))[0].numpy()
    figures = [_figure("text_encoder", stage, precision, [(engine.encode_text(PARITY_PROMPTS + [""]), text_ref)],
                       [f"{len(ids)}x{cfg.max_text_tokens}"], max_rel, min_cosine)]
    rng = np.random.default_rng(0)
    batch = 2 if cfg.guidance else 1
    unet_pairs, vae_pairs, unet_shapes, vae_shapes = [], [], [], []
    for size in cfg.sizes:
        w, h = cfg.size_pixels(size)
        lat = (cfg.latent_channels, h // cfg.vae_scale_factor, w // cfg.vae_scale_factor)
        x = rng.standard_normal((batch, *lat), dtype=np.float32)
        ctx = np.concatenate([text_ref[-1:], text_ref[:batch - 1]])
        cond = rng.standard_normal((batch, cfg.time_cond_proj_dim), dtype=np.float32) if cfg.time_cond_proj_dim else None
        with torch.inference_mode():
            ref = pipe.unet(torch.from_numpy(x), torch.full((batch,), UNET_TIMESTEP), encoder_hidden_states=torch.from_numpy(ctx),
                            timestep_cond=None if cond is None else torch.from_numpy(cond)).sample.numpy()
        unet_pairs.append((engine.unet_step(x, UNET_TIMESTEP, ctx, cond), ref))
        unet_shapes.append("x".join(map(str, x.shape)))
        z = rng.standard_normal((1, *lat), dtype=np.float32)
        with torch.inference_mode():
            ref = pipe.vae.decode(torch.from_numpy(z)).sample.numpy()
        vae_pairs.append((engine.vae.run(None, {"latent": z})[0], ref))
        vae_shapes.append("x".join(map(str, z.shape)))
    figures.append(_figure("unet", stage, precision, unet_pairs, unet_shapes, max_rel, min_cosine))
    figures.append(_figure("vae_decoder", stage, precision, vae_pairs, vae_shapes, max_rel, min_cosine))
    return figures


@contextlib.contextmanager
def same_step_noise(noise: NoiseSource) -> Iterator[None]:
    """Make diffusers' LCM scheduler draw its per-step noise from the box's generator, in the box's order."""
    import torch
    from diffusers.schedulers import scheduling_lcm

    original = scheduling_lcm.randn_tensor

    def draw(shape, generator=None, device=None, dtype=None, layout=None):
        return torch.from_numpy(noise(tuple(shape)))

    scheduling_lcm.randn_tensor = draw
    try:
        yield
    finally:
        scheduling_lcm.randn_tensor = original


def reference_images(pipe, cfg: DiffusionEngineConfig, prompt: str, width: int, height: int, n: int, seed: int,
                     steps: int, guidance_scale: float, scheduler: str | None = None) -> np.ndarray:
    """diffusers' images [n, H, W, 3] (0..1) from the box's noise for ``seed``."""
    import torch

    kind = scheduler or cfg.scheduler.kind
    pipe.scheduler = reference_scheduler(pipe, kind)
    noise = NoiseSource(seed)
    f = cfg.vae_scale_factor
    latents = torch.from_numpy(noise((n, cfg.latent_channels, height // f, width // f)))
    with torch.inference_mode(), same_step_noise(noise):
        return pipe(prompt, height=height, width=width, num_inference_steps=steps, guidance_scale=guidance_scale,
                    num_images_per_prompt=n, latents=latents, output_type="np").images


def pipeline_parity(engine: OrtDiffusion, pipe, cfg: DiffusionEngineConfig, stage: str, precision: str,
                    max_abs_pixel: float) -> ParityFigures:
    """The box's loop against diffusers on the same noise, at the first size, default steps and guidance."""
    size = cfg.sizes[0]
    w, h = cfg.size_pixels(size)
    ours = engine.generate(PARITY_PROMPTS[0], w, h, 1, GOLDEN_SEED, cfg.steps, cfg.guidance_scale)
    ref = reference_images(pipe, cfg, PARITY_PROMPTS[0], w, h, 1, GOLDEN_SEED, cfg.steps, cfg.guidance_scale)
    diff = float(np.abs(ours - ref).max())
    return ParityFigures(stage=stage, precision=precision, component="pipeline", prompts=1, tokens_per_prompt=cfg.steps,
                         shapes=[f"{size} {cfg.scheduler.kind} x{cfg.steps} guidance {cfg.guidance_scale}"],
                         max_abs_diff=round(diff, 8), min_cosine=round(float(cosine_rows(ours.reshape(1, -1), ref.reshape(1, -1))[0]), 6),
                         thresholds={"max_abs_pixel": max_abs_pixel}, passed=diff <= max_abs_pixel)
