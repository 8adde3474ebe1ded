"""Text-to-image engines against torch: per-component parity recorded in the manifest, and the box's numpy
loop against diffusers' StableDiffusionPipeline on the same seed, for each sampler, with and without guidance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.engine.diffusion.pipeline import OrtDiffusion
from appliance.factory.diffusion_parity import reference_images
from appliance.factory.export_diffusion import load_pipeline
from appliance.factory.sources import resolve_source
from appliance.sku.profiles import load_profile
from appliance.spec import load_spec
from appliance.store.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "tiny-sd-seeded"
PROMPT = "an astronaut riding a horse on the moon"


@pytest.fixture(scope="module")
def manifest(default_store) -> Manifest:
    path = default_store / IMAGE / "manifest.json"
    if not path.is_file():
        pytest.fail(f"{default_store} has no {IMAGE}: it was built before appliance.toml had an image model; rebuild it")
    return Manifest.model_validate_json(path.read_text())


@pytest.fixture(scope="module")
def engine(default_store, manifest) -> OrtDiffusion:
    return OrtDiffusion(default_store / IMAGE, manifest.engine, threads=2)


@pytest.fixture(scope="module")
def reference():
    """diffusers' pipeline from the very source the spec names, loaded as the factory loads it."""
    m = next(m for m in load_spec(REPO / "appliance.toml").models if m.id == IMAGE)
    return load_pipeline(resolve_source(m.source, m.id).path)


def test_parity_per_component_is_recorded_and_within_thresholds(manifest):
    th = load_profile(manifest.sku).parity
    figures = {(p.stage, p.component): p for p in manifest.parity}
    for stage in ("export-fp32", "tuned-fp32"):
        for component in ("text_encoder", "unet", "vae_decoder"):
            p = figures[(stage, component)]
            assert p.passed and p.max_rel_diff <= th.image_component_max_rel and p.min_cosine > 0.9999, p
    assert figures[("tuned-fp32", "unet")].shapes == ["2x4x32x32", "2x4x64x64"]  # each built size, guided batch
    assert figures[("tuned-fp32", "vae_decoder")].shapes == ["1x4x32x32", "1x4x64x64"]
    whole = figures[("tuned-fp32", "pipeline")]
    assert whole.passed and whole.max_abs_diff <= th.image_max_abs_pixel and "ddim x20" in whole.shapes[0]
    cfg = manifest.engine
    assert cfg.kind == "diffusion" and cfg.seeded_noise_model and cfg.sizes == ["64x64", "128x128"]
    assert {f.path for f in manifest.files} == {"text_encoder.onnx", "text_encoder.onnx.data", "unet.onnx",
                                                "unet.onnx.data", "vae_decoder.onnx", "vae_decoder.onnx.data",
                                                "tokenizer.json"}
    g = manifest.golden
    assert g.image_size == "64x64" and g.image_steps == 4 and len(g.expected_thumbnail) == 8 * 8 * 3
    assert "diffusers" in manifest.tools and manifest.source["kind"] == "tiny-diffusers"


@pytest.mark.parametrize("sampler,steps,guidance,n,size", [
    ("ddim", 20, 6.0, 1, "64x64"),
    ("euler", 8, 6.0, 2, "128x128"),
    ("euler", 3, 1.0, 1, "64x64"),
    ("lcm", 4, 1.0, 1, "128x128"),
])
def test_numpy_loop_matches_diffusers_on_the_same_seed(engine, reference, manifest, sampler, steps, guidance, n, size):
    cfg = manifest.engine
    w, h = cfg.size_pixels(size)
    ours = engine.generate(PROMPT, w, h, n, 42, steps, guidance, scheduler=sampler)
    ref = reference_images(reference, cfg, PROMPT, w, h, n, 42, steps, guidance, scheduler=sampler)
    assert ours.shape == ref.shape == (n, h, w, 3)
    assert float(np.abs(ours - ref).max()) <= load_profile(manifest.sku).parity.image_max_abs_pixel
    assert float(ours.std()) > 0.05  # an image, not a flat field that would match anything flat


def test_seeded_noise_reproduces_across_runs_and_differs_by_seed(engine):
    a = engine.generate(PROMPT, 64, 64, 1, 5, 4)
    b = engine.generate(PROMPT, 64, 64, 1, 5, 4)
    c = engine.generate(PROMPT, 64, 64, 1, 6, 4)
    assert np.array_equal(a, b) and float(np.abs(a - c).max()) > 0.1
