"""The image request's plan on one model: built sizes only, one batch, inline PNG; 400s that name the parameter."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.server.images_protocol import ImageGenerationRequest, image_card_metadata
from appliance.server.openai_errors import ApiError
from appliance.store.manifest import DiffusionEngineConfig, DiffusionSchedulerConfig

CFG = DiffusionEngineConfig(pad_token_id=999, text_hidden_size=32, vae_scale_factor=2, vae_scaling_factor=0.18215,
                            sizes=["64x64", "128x96"], max_images=4, guidance=True, guidance_scale=6.0, steps=20,
                            max_steps=50, scheduler=DiffusionSchedulerConfig(kind="ddim"), seeded_noise_model=True)


def plan(**fields):
    return ImageGenerationRequest(prompt="a cat", **fields).plan("m", CFG, seed=7)


def refused(**fields) -> ApiError:
    with pytest.raises(ApiError) as err:
        plan(**fields)
    assert err.value.status == 400
    return err.value


def test_defaults_are_the_models_first_size_one_image_its_steps():
    p = plan()
    assert (p.size, p.width, p.height, p.n, p.steps, p.seed) == ("64x64", 64, 64, 1, 20, 7)
    p = plan(size="128x96", n=4, steps=3, response_format="b64_json", quality="standard", output_format="png")
    assert (p.width, p.height, p.n, p.steps) == (128, 96, 4, 3)
    assert plan(size="auto").size == "64x64"


def test_unbuilt_size_is_refused_naming_the_built_sizes():
    err = refused(size="1024x1024")
    assert err.param == "size" and "64x64, 128x96" in err.message


def test_url_output_is_refused_clearly():
    err = refused(response_format="url")
    assert err.param == "response_format" and "b64_json" in err.message and err.code == "unsupported_value"


@pytest.mark.parametrize("fields,param", [
    ({"n": 5}, "n"), ({"steps": 51}, "steps"), ({"style": "vivid"}, "style"), ({"quality": "hd"}, "quality"),
    ({"output_format": "jpeg"}, "output_format"), ({"background": "transparent"}, "background"),
])
def test_what_the_box_does_not_honour_is_refused(fields, param):
    assert refused(**fields).param == param


def test_malformed_fields_fail_validation():
    for bad in ({"prompt": ""}, {"prompt": "x", "n": 0}, {"prompt": "x", "seed": -1}, {"prompt": "x", "steps": 0},
                {"prompt": "x", "response_format": "png"}):
        with pytest.raises(ValidationError):
            ImageGenerationRequest(**bad)
    assert ImageGenerationRequest(prompt="x", future_field=1).ignored_fields() == ["future_field"]


def test_model_card_says_the_seeded_model_draws_noise_and_how_to_get_a_real_one():
    meta = image_card_metadata(CFG)
    assert meta["seeded_noise_model"] is True and "noise" in meta["notice"] and "diffusers-folder" in meta["notice"]
    assert meta["sizes"] == ["64x64", "128x96"] and meta["max_images"] == 4
    real = image_card_metadata(CFG.model_copy(update={"seeded_noise_model": False}))
    assert real["seeded_noise_model"] is False and real["notice"] is None
