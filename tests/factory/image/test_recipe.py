from pathlib import Path

import pytest

from appliance.errors import ApplianceError
from appliance.factory.image.recipe import RECIPE_DIR, Recipe


def test_the_recipe_lists_what_the_box_runs():
    recipe = Recipe.load()
    for needed in ("linux-image-amd64", "systemd", "python3", "systemd-boot-efi", "polkitd"):
        assert needed in recipe.packages
    assert not any(p.startswith(("gcc", "build-essential", "python3-pip")) for p in recipe.packages)


def test_the_debootstrap_cache_key_follows_the_package_list(tmp_path):
    (tmp_path / "packages.txt").write_text("systemd\npython3  # the venv's interpreter\n")
    one = Recipe.load(tmp_path)
    (tmp_path / "packages.txt").write_text("systemd\npython3\nvim\n")
    two = Recipe.load(tmp_path)
    assert one.packages == ("python3", "systemd") and one.base_key != two.base_key


def test_partition_uuids_are_stable_per_box():
    recipe = Recipe.load()
    assert recipe.partition_uuid("box", "root-a") == recipe.partition_uuid("box", "root-a")
    assert recipe.partition_uuid("box", "root-a") != recipe.partition_uuid("box", "root-b")


def test_a_missing_recipe_says_where(tmp_path):
    with pytest.raises(ApplianceError, match="packages.txt: image recipe not found"):
        Recipe.load(tmp_path)


def test_shipped_recipe_opens_no_door():
    """The serial autologin lives only under test-access/, which a shipped build never copies."""
    shipped = [p for p in (RECIPE_DIR / "rootfs").rglob("*") if p.is_file()]
    assert not any("getty" in str(p) or "ssh" in str(p) for p in shipped)
    assert list((RECIPE_DIR / "test-access").rglob("autologin.conf"))
