import shutil
import subprocess

import pytest

from appliance.factory.image import disk, filesystems
from appliance.factory.image.recipe import RECIPE_DIR

needs_repart = pytest.mark.skipif(shutil.which("systemd-repart") is None or shutil.which("mksquashfs") is None,
                                  reason="needs systemd-repart and squashfs-tools")


def test_definitions_fill_every_placeholder(tmp_path):
    defs = disk.definitions(RECIPE_DIR, tmp_path / "repart.d", {
        "ESP_IMAGE": "/x/esp", "ROOT_IMAGE": "/x/root", "DATA_IMAGE": "/x/data", "ROOT_SLOT_BYTES": "8388608",
        "ROOT_A_UUID": "a", "ROOT_B_UUID": "b", "DATA_UUID": "d"})
    texts = {p.name: p.read_text() for p in defs.glob("*.conf")}
    assert sorted(texts) == ["10-esp.conf", "20-root-a.conf", "21-root-b.conf", "30-data.conf"]
    assert not any("@" in t for t in texts.values())
    assert "CopyBlocks" not in texts["21-root-b.conf"], "slot B ships empty"


def test_slot_size_leaves_room_and_is_aligned(tmp_path):
    img = tmp_path / "root.squashfs"
    img.write_bytes(b"\0" * (100 * 2**20))
    size = disk.slot_bytes(img)
    assert size % disk.SLOT_ALIGN == 0 and size >= 100 * 2**20 * disk.SLOT_HEADROOM


def test_a_vendor_may_reserve_bigger_slots_but_never_smaller_than_the_root(tmp_path):
    img = tmp_path / "root.squashfs"
    img.write_bytes(b"\0" * (100 * 2**20))
    assert disk.slot_bytes(img, 448 * 2**20) == 448 * 2**20
    assert disk.slot_bytes(img, 50 * 2**20) == disk.slot_bytes(img)


@needs_repart
def test_repart_lays_out_esp_two_slots_and_data(tmp_path):
    (tmp_path / "rootdir/etc").mkdir(parents=True)
    (tmp_path / "rootdir/etc/hostname").write_text("appliance\n")
    root = filesystems.squashfs(tmp_path / "rootdir", tmp_path / "root.squashfs", 0)
    esp_img = tmp_path / "esp.img"
    subprocess.run(["mkfs.vfat", "-C", str(esp_img), "34000"], check=True, capture_output=True)
    (tmp_path / "var/lib").mkdir(parents=True)
    data = filesystems.data(tmp_path / "var", tmp_path / "data.ext4", "11111111-2222-3333-4444-555555555555", 0)
    defs = disk.definitions(RECIPE_DIR, tmp_path / "repart.d", {
        "ESP_IMAGE": str(esp_img), "ROOT_IMAGE": str(root), "DATA_IMAGE": str(data),
        "ROOT_SLOT_BYTES": str(disk.slot_bytes(root)), "ROOT_A_UUID": "6f0e2b7c-1d3a-4e5f-8a9b-0c1d2e3f4a5b",
        "ROOT_B_UUID": "7f0e2b7c-1d3a-4e5f-8a9b-0c1d2e3f4a5b", "DATA_UUID": "8f0e2b7c-1d3a-4e5f-8a9b-0c1d2e3f4a5b"})
    parts = disk.assemble(defs, tmp_path / "disk.raw", "9f0e2b7c-1d3a-4e5f-8a9b-0c1d2e3f4a5b")
    assert [(p["label"], p["type"]) for p in parts] == [
        ("esp", "esp"), ("root-a", "root-x86-64"), ("root-b", "root-x86-64"), ("data", "linux-generic")]
    assert parts[1]["uuid"] == "6f0e2b7c-1d3a-4e5f-8a9b-0c1d2e3f4a5b"
    assert parts[1]["size"] == parts[2]["size"]
    with (tmp_path / "disk.raw").open("rb") as f:
        f.seek(512)
        assert f.read(8) == b"EFI PART", "a GPT disk"
        f.seek(parts[1]["offset"])
        assert f.read(4) == b"hsqs", "root A holds the squashfs"
