"""Diffusers sources: the seeded pipeline is written as a real SD folder, and a folder laid out exactly as
SD-1.5 on the hub loads through the same from_pretrained path; broken folders are named."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from appliance.errors import SourceError
from appliance.factory.export_diffusion import engine_config, load_pipeline
from appliance.factory.sources import resolve_source
from appliance.factory.tiny_diffusers import VOCAB_SIZE, build_tiny_pipeline
from appliance.sku.profiles import load_profile
from appliance.spec import DiffusersFolderSource, ImageOptions, ModelSpec, TinyDiffusersSource

SD15_MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.6.0",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
SD15_SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
                  "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
                  "clip_sample": False}
SD15_FEATURE_EXTRACTOR = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                          "feature_extractor_type": "CLIPFeatureExtractor",
                          "image_mean": [0.48145466, 0.4578275, 0.40821073],
                          "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny") / "seed0", 0)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors",
                 "text_encoder/model.safetensors"):
        h.update((folder / part).read_bytes())
    return h.hexdigest()


def test_seeded_pipeline_is_a_diffusers_folder_with_a_clip_tokenizer(tiny):
    for part in ("model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                 "text_encoder/model.safetensors", "tokenizer/vocab.json", "tokenizer/merges.txt",
                 "tokenizer/tokenizer_config.json", "tokenizer/special_tokens_map.json", "unet/config.json",
                 "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                 "vae/diffusion_pytorch_model.safetensors"):
        assert (tiny / part).is_file(), part
    vocab = json.loads((tiny / "tokenizer/vocab.json").read_text())
    assert len(vocab) == VOCAB_SIZE and vocab["!"] == 0 and vocab["!</w>"] == 256
    assert vocab["<|startoftext|>"] == VOCAB_SIZE - 2 and vocab["<|endoftext|>"] == VOCAB_SIZE - 1
    unet = json.loads((tiny / "unet/config.json").read_text())
    assert unet["block_out_channels"] == [32, 64] and unet["cross_attention_dim"] == 32  # diffusers' test sizes
    pipe = load_pipeline(tiny)
    ids = pipe.tokenizer("a photo of a cat").input_ids
    assert ids[0] == VOCAB_SIZE - 2 and ids[-1] == VOCAB_SIZE - 1 and len(ids) < 10  # merges learned, not bytes
    assert pipe.text_encoder.config.vocab_size == VOCAB_SIZE


def test_same_seed_same_weights_other_seed_other_weights(tiny, tmp_path):
    assert _digest(build_tiny_pipeline(tmp_path / "again", 0)) == _digest(tiny)
    assert _digest(build_tiny_pipeline(tmp_path / "other", 1)) != _digest(tiny)


def test_tiny_source_resolves_through_the_cache(tmp_path):
    src = resolve_source(TinyDiffusersSource(kind="tiny-diffusers", seed=0), "m", tmp_path)
    assert src.kind == "diffusers" and src.path.is_relative_to(tmp_path) and "noise" in src.description["weights"]


def _as_sd15(tiny: Path, dest: Path) -> Path:
    """The seeded weights in a folder laid out file for file as runwayml/stable-diffusion-v1-5."""
    shutil.copytree(tiny, dest, ignore=shutil.ignore_patterns(".complete"))
    (dest / "model_index.json").write_text(json.dumps(SD15_MODEL_INDEX, indent=2))
    (dest / "scheduler/scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER, indent=2))
    (dest / "feature_extractor").mkdir()
    (dest / "feature_extractor/preprocessor_config.json").write_text(json.dumps(SD15_FEATURE_EXTRACTOR, indent=2))
    (dest / "safety_checker").mkdir()
    (dest / "safety_checker/config.json").write_text(json.dumps({"_name_or_path": "CompVis/stable-diffusion-safety-checker",
                                                                 "architectures": ["StableDiffusionSafetyChecker"]}))
    return dest


def _spec(scheduler: str | None) -> ModelSpec:
    return ModelSpec(id="sd15", task="text-to-image", source={"kind": "diffusers-folder", "path": "/x"},
                     image=ImageOptions(sizes=["64x64"], scheduler=scheduler, steps=25))


def test_a_folder_laid_out_as_sd15_loads_unchanged(tiny, tmp_path):
    folder = _as_sd15(tiny, tmp_path / "stable-diffusion-v1-5")
    src = resolve_source(DiffusersFolderSource(kind="diffusers-folder", path=folder), "sd15")
    assert src.kind == "diffusers" and src.path == folder
    pipe = load_pipeline(src.path)
    assert type(pipe.scheduler).__name__ == "PNDMScheduler" and pipe.safety_checker is None
    profile = load_profile("cpu-x86_64-avx512")
    with pytest.raises(SourceError, match="PNDMScheduler is not one the box runs; set image.scheduler"):
        engine_config(pipe, _spec(None), profile, seeded_noise_model=False)
    cfg = engine_config(pipe, _spec("euler"), profile, seeded_noise_model=False)
    assert cfg.scheduler.kind == "euler" and cfg.scheduler.steps_offset == 1
    assert cfg.scheduler.timestep_spacing == "linspace"  # diffusers' Euler default for a config that names none
    assert (cfg.vae_scale_factor, cfg.latent_channels, cfg.max_text_tokens, cfg.pad_token_id) == (2, 4, 77, VOCAB_SIZE - 1)
    assert cfg.seeded_noise_model is False and cfg.sizes == ["64x64"] and cfg.steps == 25


def test_sizes_the_pipeline_cannot_take_are_refused(tiny):
    from appliance.errors import ApplianceError

    bad = _spec("ddim").model_copy(update={"image": ImageOptions(sizes=["64x64", "66x66"])})
    with pytest.raises(ApplianceError, match="66x66 is not a multiple of 4 pixels"):
        engine_config(load_pipeline(tiny), bad, load_profile("cpu-x86_64-avx512"), seeded_noise_model=True)


def test_broken_diffusers_folders_are_named(tiny, tmp_path):
    def resolve(path: Path):
        return resolve_source(DiffusersFolderSource(kind="diffusers-folder", path=path), "sd")

    with pytest.raises(SourceError, match="does not exist or is not a folder"):
        resolve(tmp_path / "nope")
    folder = shutil.copytree(tiny, tmp_path / "sd")
    (folder / "model_index.json").unlink()
    with pytest.raises(SourceError, match="has no model_index.json"):
        resolve(folder)
    shutil.copy(tiny / "model_index.json", folder / "model_index.json")
    shutil.rmtree(folder / "vae")
    with pytest.raises(SourceError, match="has no vae/ folder"):
        resolve(folder)
    shutil.copytree(tiny / "vae", folder / "vae")
    (folder / "unet/diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(SourceError, match=r"unet has no weights \(\*.safetensors or \*.bin\)"):
        resolve(folder)
    (folder / "unet/diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SourceError, match="diffusers could not load this as a Stable Diffusion pipeline"):
        load_pipeline(folder)
