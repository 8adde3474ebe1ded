import shutil

import pytest

from appliance.factory.image import filesystems

pytestmark = pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")


def test_squashfs_is_bit_reproducible(tmp_path):
    (tmp_path / "root/opt").mkdir(parents=True)
    (tmp_path / "root/opt/file").write_text("same bytes\n")
    one = filesystems.squashfs(tmp_path / "root", tmp_path / "one.sqfs", 1_700_000_000).read_bytes()
    (tmp_path / "root/opt/file").touch()
    two = filesystems.squashfs(tmp_path / "root", tmp_path / "two.sqfs", 1_700_000_000).read_bytes()
    assert one == two and len(one) % 4096 == 0
