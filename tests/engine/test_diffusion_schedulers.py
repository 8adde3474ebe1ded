"""The box's numpy samplers step for step against diffusers' own schedulers (torch), on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.engine.diffusion.schedulers import alphas_cumprod, make_sampler
from appliance.store.manifest import DiffusionSchedulerConfig

torch = pytest.importorskip("torch", reason="the reference schedulers are diffusers' (factory side)")
diffusers = pytest.importorskip("diffusers")

CLASSES = {"euler": "EulerDiscreteScheduler", "ddim": "DDIMScheduler", "lcm": "LCMScheduler"}


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal up to float32 rounding, relative to the array's scale (samples reach |x| ~ 20 at high sigma)."""
    scale = max(1.0, float(np.abs(ref).max()))
    assert float(np.abs(ours - ref).max()) <= 2e-6 * scale, float(np.abs(ours - ref).max())


def _pair(kind: str, steps: int, **over):
    cfg = DiffusionSchedulerConfig(kind=kind, **over)
    fields = cfg.model_dump(exclude={"kind"})
    if kind == "euler":
        for k in ("set_alpha_to_one", "clip_sample", "clip_sample_range", "original_inference_steps", "timestep_scaling"):
            fields.pop(k)
    if kind == "ddim":
        for k in ("original_inference_steps", "timestep_scaling"):
            fields.pop(k)
    ref = getattr(diffusers, CLASSES[kind])(**fields)
    ref.set_timesteps(steps)
    return make_sampler(cfg, steps), ref


CASES = [
    ("euler", 20, {}), ("euler", 4, {"timestep_spacing": "trailing"}), ("euler", 7, {"timestep_spacing": "linspace"}),
    ("euler", 10, {"prediction_type": "v_prediction", "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}),
    ("ddim", 20, {"steps_offset": 1}), ("ddim", 5, {"timestep_spacing": "trailing", "set_alpha_to_one": True}),
    ("ddim", 8, {"prediction_type": "v_prediction", "clip_sample": True}),
    ("ddim", 6, {"beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "linspace"}),
    ("lcm", 4, {}), ("lcm", 1, {}), ("lcm", 8, {"original_inference_steps": 100}),
]


@pytest.mark.parametrize("kind,steps,over", CASES, ids=[f"{k}-{s}-{'-'.join(o) or 'default'}" for k, s, o in CASES])
def test_sampler_matches_diffusers_step_for_step(kind, steps, over):
    ours, ref = _pair(kind, steps, **over)
    np.testing.assert_allclose(ours.timesteps, ref.timesteps.numpy(), rtol=0, atol=1e-4)
    assert ours.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)
    rng = np.random.default_rng(0)
    sample = rng.standard_normal((2, 4, 8, 8), dtype=np.float32) * np.float32(ours.init_noise_sigma)
    ref_sample = torch.from_numpy(sample.copy())
    step_noise = [rng.standard_normal((2, 4, 8, 8), dtype=np.float32) for _ in range(steps)]
    drawn = iter(step_noise)
    from diffusers.schedulers import scheduling_lcm

    original = scheduling_lcm.randn_tensor
    scheduling_lcm.randn_tensor = lambda shape, **_: torch.from_numpy(step_noise[ours_i])
    try:
        for ours_i, t in enumerate(ref.timesteps):
            model_out = rng.standard_normal((2, 4, 8, 8), dtype=np.float32)
            scaled = ours.scale(sample, ours_i)
            ref_scaled = ref.scale_model_input(ref_sample, t)
            _close(scaled, ref_scaled.numpy())
            sample = ours.step(model_out, ours_i, sample, lambda shape: next(drawn))
            ref_sample = ref.step(torch.from_numpy(model_out), t, ref_sample, return_dict=False)[0]
            _close(sample, ref_sample.numpy())
    finally:
        scheduling_lcm.randn_tensor = original
    assert sample.dtype == np.float32 and np.isfinite(sample).all()


def test_alphas_cumprod_matches_diffusers():
    for schedule in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        cfg = DiffusionSchedulerConfig(kind="ddim", beta_schedule=schedule)
        ref = diffusers.DDIMScheduler(beta_schedule=schedule, beta_start=cfg.beta_start, beta_end=cfg.beta_end)
        np.testing.assert_allclose(alphas_cumprod(cfg), ref.alphas_cumprod.numpy(), rtol=1e-5)


def test_lcm_refuses_more_steps_than_its_schedule_has():
    with pytest.raises(ValueError, match="at most 50 steps"):
        make_sampler(DiffusionSchedulerConfig(kind="lcm"), 51)


def test_a_sampler_can_be_chosen_over_the_configs_own():
    cfg = DiffusionSchedulerConfig(kind="ddim", steps_offset=1)
    assert type(make_sampler(cfg, 10, "euler")).__name__ == "EulerSampler"
    assert make_sampler(cfg, 10).timesteps.tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
