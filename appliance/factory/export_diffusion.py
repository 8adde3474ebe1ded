"""A diffusers Stable Diffusion folder -> three ONNX engines (CLIP text encoder, UNet, VAE decoder) + tokenizer.

The folder is loaded with ``StableDiffusionPipeline.from_pretrained``, the
path a real SD-1.5 or SD-Turbo folder takes. Each component is exported
with torch.onnx's dynamo exporter with batch (and for the UNet and VAE,
height and width) left dynamic; the SKU's shapes are the ones the factory
then checks against torch and the only ones the box serves.
"""

from __future__ import annotations

import logging
from pathlib import Path

from appliance.errors import ApplianceError, SourceError
from appliance.factory.slice_attention import slice_self_attention
from appliance.sku.profiles import SkuProfile
from appliance.spec import ModelSpec
from appliance.store.manifest import DiffusionEngineConfig, DiffusionSchedulerConfig

SCHEDULER_KINDS = {"EulerDiscreteScheduler": "euler", "DDIMScheduler": "ddim", "LCMScheduler": "lcm"}
SCHEDULER_CLASSES = {v: k for k, v in SCHEDULER_KINDS.items()}


def load_pipeline(folder: Path):
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as df_logging

    df_logging.set_verbosity_error()
    df_logging.disable_progress_bar()
    try:
        pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None,
                                                       feature_extractor=None, requires_safety_checker=False,
                                                       local_files_only=True)
    except Exception as exc:  # diffusers raises many kinds on a damaged or foreign folder
        raise SourceError(f"{folder}: diffusers could not load this as a Stable Diffusion pipeline "
                          f"({type(exc).__name__}: {exc})") from None
    pipe.set_progress_bar_config(disable=True)
    if getattr(pipe.unet.config, "addition_embed_type", None):
        raise SourceError(f"{folder}: the UNet takes added conditioning ({pipe.unet.config.addition_embed_type}, "
                          "as SDXL does); the box runs Stable Diffusion 1.x/2.x-architecture pipelines")
    return pipe


def reference_scheduler(pipe, kind: str):
    """diffusers' own scheduler of ``kind``, from the folder's scheduler config (what the box mirrors)."""
    import diffusers

    return getattr(diffusers, SCHEDULER_CLASSES[kind]).from_config(pipe.scheduler.config)


def scheduler_config(pipe, kind: str | None, where: str) -> DiffusionSchedulerConfig:
    own = type(pipe.scheduler).__name__
    kind = kind or SCHEDULER_KINDS.get(own)
    if kind is None:
        raise SourceError(f"{where}: the folder's scheduler {own} is not one the box runs; set image.scheduler "
                          f"to one of {', '.join(SCHEDULER_CLASSES)} in the spec")
    c = reference_scheduler(pipe, kind).config
    unsupported = {
        "trained_betas": c.get("trained_betas") is not None, "rescale_betas_zero_snr": c.get("rescale_betas_zero_snr"),
        "thresholding": c.get("thresholding"), "use_karras_sigmas": c.get("use_karras_sigmas"),
        "use_exponential_sigmas": c.get("use_exponential_sigmas"), "use_beta_sigmas": c.get("use_beta_sigmas"),
        "interpolation_type": c.get("interpolation_type", "linear") != "linear",
        "timestep_type": c.get("timestep_type", "discrete") != "discrete",
        "final_sigmas_type": c.get("final_sigmas_type", "zero") != "zero",
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise SourceError(f"{where}: scheduler option {bad[0]} is not supported by the box's {kind} sampler")
    return DiffusionSchedulerConfig(
        kind=kind, num_train_timesteps=c["num_train_timesteps"], beta_start=c["beta_start"], beta_end=c["beta_end"],
        beta_schedule=c["beta_schedule"], prediction_type=c["prediction_type"],
        timestep_spacing=c.get("timestep_spacing", "leading"), steps_offset=c.get("steps_offset", 0),
        set_alpha_to_one=c.get("set_alpha_to_one", False), clip_sample=bool(c.get("clip_sample", False)),
        clip_sample_range=c.get("clip_sample_range", 1.0),
        original_inference_steps=c.get("original_inference_steps", 50),
        timestep_scaling=c.get("timestep_scaling", 10.0))


def engine_config(pipe, m: ModelSpec, profile: SkuProfile, seeded_noise_model: bool) -> DiffusionEngineConfig:
    where = f"model {m.id}"
    opts = m.image
    vae_factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    multiple = vae_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    for size in opts.sizes:
        w, h = (int(x) for x in size.split("x"))
        if w % multiple or h % multiple:
            raise ApplianceError(f"{where}: image size {size} is not a multiple of {multiple} pixels, which this "
                                 "pipeline's VAE and UNet need; pick another size")
    if getattr(pipe.vae.config, "shift_factor", None):
        raise SourceError(f"{where}: the VAE has a shift factor (SD3/Flux latents); the box runs SD 1.x/2.x pipelines")
    sched = scheduler_config(pipe, opts.scheduler, where)
    time_cond = pipe.unet.config.time_cond_proj_dim
    guided = opts.guidance_scale > 1 and time_cond is None
    if guided and not profile.image.guidance:
        raise ApplianceError(f"{where}: guidance_scale {opts.guidance_scale} needs classifier-free guidance, which "
                             f"{profile.name} does not build; set image.guidance_scale <= 1")
    if sched.kind == "lcm" and opts.steps > sched.original_inference_steps:
        raise ApplianceError(f"{where}: LCM sampling takes at most {sched.original_inference_steps} steps")
    return DiffusionEngineConfig(
        max_text_tokens=pipe.tokenizer.model_max_length, pad_token_id=pipe.tokenizer.pad_token_id,
        text_hidden_size=pipe.text_encoder.config.hidden_size, latent_channels=pipe.unet.config.in_channels,
        vae_scale_factor=vae_factor, vae_scaling_factor=pipe.vae.config.scaling_factor, time_cond_proj_dim=time_cond,
        sizes=list(opts.sizes), max_images=opts.max_images or profile.image.max_images,
        guidance=profile.image.guidance, guidance_scale=opts.guidance_scale, steps=opts.steps,
        max_steps=min(profile.image.max_steps, sched.original_inference_steps if sched.kind == "lcm" else 1000),
        scheduler=sched, threads=profile.tuning.threads, seeded_noise_model=seeded_noise_model)


def _export(module, args: tuple, names: list[str], output: str, dynamic: tuple, path: Path) -> Path:
    import torch

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        program = torch.onnx.export(module.eval(), args, input_names=names, output_names=[output],
                                    dynamic_shapes=dynamic, dynamo=True, optimize=True, verbose=False)
        program.save(str(path), external_data=True)
    except Exception as exc:
        raise ApplianceError(f"ONNX export of {path.stem} failed: {type(exc).__name__}: {exc}") from None
    return path


def export_components(pipe, cfg: DiffusionEngineConfig, out: Path) -> Path:
    """Write text_encoder.onnx, unet.onnx, vae_decoder.onnx (each with its .data) and tokenizer.json to ``out``."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    dyn = torch.export.Dim.DYNAMIC

    class Text(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids):
            return self.inner(input_ids)[0]

    class Unet(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
            return self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                              timestep_cond=timestep_cond, return_dict=False)[0]

    class VaeDecoder(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, latent):
            return self.inner.decode(latent, return_dict=False)[0]

    w, h = cfg.size_pixels(cfg.sizes[0])
    lh, lw = h // cfg.vae_scale_factor, w // cfg.vae_scale_factor
    ids = torch.full((2, cfg.max_text_tokens), cfg.pad_token_id, dtype=torch.int64)
    _export(Text(pipe.text_encoder), (ids,), ["input_ids"], "last_hidden_state", ({0: dyn},), out / cfg.text_encoder)
    sample = torch.randn(2, cfg.latent_channels, lh, lw)
    args = [sample, torch.tensor([500.0, 500.0]), torch.randn(2, cfg.max_text_tokens, cfg.text_hidden_size)]
    names = ["sample", "timestep", "encoder_hidden_states"]
    dynamic = [{0: dyn, 2: dyn, 3: dyn}, {0: dyn}, {0: dyn}]
    if cfg.time_cond_proj_dim:
        args.append(torch.randn(2, cfg.time_cond_proj_dim))
        names.append("timestep_cond")
        dynamic.append({0: dyn})
    slice_self_attention(_export(Unet(pipe.unet), tuple(args), names, "out_sample", tuple(dynamic), out / cfg.unet),
                         "encoder_hidden_states")
    slice_self_attention(_export(VaeDecoder(pipe.vae), (torch.randn(1, cfg.latent_channels, lh, lw),), ["latent"],
                                 "image", ({0: dyn, 2: dyn, 3: dyn},), out / cfg.vae_decoder), None)
    pipe.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    return out
