import os
import subprocess

import pytest

from appliance.factory.image import esp

pytestmark = pytest.mark.skipif(subprocess.run(["which", "mcopy"], capture_output=True).returncode != 0,
                                reason="needs mtools and dosfstools")


def _fake_root(root):
    (root / "usr/lib/systemd/boot/efi").mkdir(parents=True)
    (root / esp.BOOTLOADER).write_bytes(b"MZ systemd-boot")
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.1.0-50-amd64").write_bytes(b"kernel")
    (root / "boot/initrd.img-6.1.0-50-amd64").write_bytes(b"initrd")


def test_entry_boots_slot_a_read_only_from_its_partition_uuid(tmp_path):
    _fake_root(tmp_path / "root")
    out = esp.layout(tmp_path / "root", tmp_path / "esp", "0.1.0+abc", "1234-uuid")
    entry = (tmp_path / "esp/loader/entries/appliance-0001-a.conf").read_text()
    assert "options root=PARTUUID=1234-uuid ro rootfstype=squashfs" in entry and "appliance.slot=a" in entry
    assert "linux /appliance/a/vmlinuz" in entry and out["kernel_version"] == "6.1.0-50-amd64"
    loader = (tmp_path / "esp/loader/loader.conf").read_text()
    # No default: systemd-boot's own order picks (a slot on trial first, a spent one last); see update/slots.py.
    assert "editor no" in loader and "default" not in loader
    assert (tmp_path / "esp/EFI/BOOT/BOOTX64.EFI").read_bytes() == b"MZ systemd-boot"


def test_the_fat_image_is_reproducible_and_readable(tmp_path):
    _fake_root(tmp_path / "root")
    esp.layout(tmp_path / "root", tmp_path / "esp", "v", "u")
    one = esp.image(tmp_path / "esp", tmp_path / "one.vfat", 1_700_000_000).read_bytes()
    two = esp.image(tmp_path / "esp", tmp_path / "two.vfat", 1_700_000_000).read_bytes()
    assert one == two
    text = subprocess.run(["mtype", "-i", str(tmp_path / "one.vfat"), "::/loader/entries/appliance-0001-a.conf"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "root=PARTUUID=u" in text
