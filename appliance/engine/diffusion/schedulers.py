"""The denoising samplers in numpy, computed step for step as diffusers' schedulers compute them.

Euler (``EulerDiscreteScheduler``), DDIM (``DDIMScheduler``, eta 0) and
LCM (``LCMScheduler``, the few-step sampler of consistency-distilled
models). Each takes the source's scheduler config as the store recorded it;
the tests hold each one to diffusers' own on the same inputs.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from appliance.store.manifest import DiffusionSchedulerConfig

Noise = Callable[[tuple[int, ...]], np.ndarray]


def alphas_cumprod(cfg: DiffusionSchedulerConfig) -> np.ndarray:
    """Cumulative product of (1 - beta) over the training timesteps, in float32 as diffusers keeps it."""
    n = cfg.num_train_timesteps
    if cfg.beta_schedule == "linear":
        betas = np.linspace(cfg.beta_start, cfg.beta_end, n, dtype=np.float32)
    elif cfg.beta_schedule == "scaled_linear":
        betas = np.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, n, dtype=np.float32) ** 2
    else:  # squaredcos_cap_v2

        def bar(t: float) -> float:
            return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

        betas = np.array([min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)], dtype=np.float32)
    return np.cumprod((1.0 - betas).astype(np.float32), dtype=np.float32)


def _spaced(cfg: DiffusionSchedulerConfig, steps: int, integer: bool) -> np.ndarray:
    """Inference timesteps, highest first, by the config's timestep spacing."""
    n = cfg.num_train_timesteps
    if cfg.timestep_spacing == "linspace":
        ts = np.linspace(0, n - 1, steps, dtype=np.float64 if integer else np.float32)[::-1]
        return ts.round().astype(np.int64) if integer else ts.copy()
    if cfg.timestep_spacing == "leading":
        ratio = n // steps
        ts = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64 if integer else np.float32)
        return ts + cfg.steps_offset
    ratio = n / steps
    ts = np.round(np.arange(n, 0, -ratio)).astype(np.int64 if integer else np.float32)
    return ts - 1


class Sampler:
    """One sampler bound to a number of steps: what the UNet sees at step i, and how latents move."""

    init_noise_sigma: float = 1.0
    timesteps: np.ndarray

    def scale(self, sample: np.ndarray, i: int) -> np.ndarray:
        return sample

    def step(self, model_output: np.ndarray, i: int, sample: np.ndarray, noise: Noise) -> np.ndarray:
        raise NotImplementedError


def _x0_eps(cfg: DiffusionSchedulerConfig, out: np.ndarray, sample: np.ndarray, a: np.float32):
    """Predicted clean sample and noise from the model output, by prediction type."""
    b = np.float32(1) - a
    if cfg.prediction_type == "epsilon":
        return (sample - b ** 0.5 * out) / a ** 0.5, out
    if cfg.prediction_type == "sample":
        return out, (sample - a ** 0.5 * out) / b ** 0.5
    return a ** 0.5 * sample - b ** 0.5 * out, a ** 0.5 * out + b ** 0.5 * sample


class EulerSampler(Sampler):
    def __init__(self, cfg: DiffusionSchedulerConfig, steps: int):
        self.cfg = cfg
        ac = alphas_cumprod(cfg)
        ts = _spaced(cfg, steps, integer=False).astype(np.float32)
        sigmas = ((1 - ac) / ac) ** 0.5
        sig = np.interp(ts, np.arange(0, len(sigmas)), sigmas)
        self.sigmas = np.concatenate([sig, [0.0]]).astype(np.float32)
        self.timesteps = ts
        top = float(self.sigmas.max())
        self.init_noise_sigma = top if cfg.timestep_spacing in ("linspace", "trailing") else (top ** 2 + 1) ** 0.5

    def scale(self, sample: np.ndarray, i: int) -> np.ndarray:
        return sample / ((self.sigmas[i] ** 2 + 1) ** 0.5)

    def step(self, model_output: np.ndarray, i: int, sample: np.ndarray, noise: Noise) -> np.ndarray:
        sigma = self.sigmas[i]
        if self.cfg.prediction_type == "epsilon":
            x0 = sample - sigma * model_output
        elif self.cfg.prediction_type == "v_prediction":
            x0 = model_output * (-sigma / (sigma ** 2 + 1) ** 0.5) + sample / (sigma ** 2 + 1)
        else:
            x0 = model_output
        derivative = (sample - x0) / sigma
        return (sample + derivative * (self.sigmas[i + 1] - sigma)).astype(np.float32)


class DdimSampler(Sampler):
    def __init__(self, cfg: DiffusionSchedulerConfig, steps: int):
        self.cfg = cfg
        self.ac = alphas_cumprod(cfg)
        self.final = np.float32(1.0) if cfg.set_alpha_to_one else self.ac[0]
        self.timesteps = _spaced(cfg, steps, integer=True)
        self.stride = cfg.num_train_timesteps // steps

    def step(self, model_output: np.ndarray, i: int, sample: np.ndarray, noise: Noise) -> np.ndarray:
        t = int(self.timesteps[i])
        prev = t - self.stride
        a = self.ac[t]
        a_prev = self.ac[prev] if prev >= 0 else self.final
        x0, eps = _x0_eps(self.cfg, model_output, sample, a)
        if self.cfg.clip_sample:
            x0 = np.clip(x0, -self.cfg.clip_sample_range, self.cfg.clip_sample_range)
        return (a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps).astype(np.float32)


class LcmSampler(Sampler):
    """Latent consistency sampling: each step predicts the clean sample, then re-noises to the next timestep."""

    def __init__(self, cfg: DiffusionSchedulerConfig, steps: int):
        self.cfg = cfg
        self.ac = alphas_cumprod(cfg)
        self.final = np.float32(1.0) if cfg.set_alpha_to_one else self.ac[0]
        original = cfg.original_inference_steps
        k = cfg.num_train_timesteps // original
        origin = (np.arange(1, original + 1) * k - 1)[::-1].copy()
        if len(origin) // steps < 1:
            raise ValueError(f"LCM sampling takes at most {len(origin)} steps, not {steps}")
        idx = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
        self.timesteps = origin[idx].astype(np.int64)

    def step(self, model_output: np.ndarray, i: int, sample: np.ndarray, noise: Noise) -> np.ndarray:
        t = int(self.timesteps[i])
        last = i == len(self.timesteps) - 1
        prev = t if last else int(self.timesteps[i + 1])
        a = self.ac[t]
        a_prev = self.ac[prev] if prev >= 0 else self.final
        scaled = t * self.cfg.timestep_scaling
        c_skip = 0.25 / (scaled ** 2 + 0.25)
        c_out = scaled / (scaled ** 2 + 0.25) ** 0.5
        x0, _ = _x0_eps(self.cfg, model_output, sample, a)
        if self.cfg.clip_sample:
            x0 = np.clip(x0, -self.cfg.clip_sample_range, self.cfg.clip_sample_range)
        denoised = c_out * x0 + c_skip * sample
        if last:
            return denoised.astype(np.float32)
        return (a_prev ** 0.5 * denoised + (1 - a_prev) ** 0.5 * noise(model_output.shape)).astype(np.float32)


SAMPLERS: dict[str, type[Sampler]] = {"euler": EulerSampler, "ddim": DdimSampler, "lcm": LcmSampler}


def make_sampler(cfg: DiffusionSchedulerConfig, steps: int, kind: str | None = None) -> Sampler:
    return SAMPLERS[kind or cfg.kind](cfg, steps)
