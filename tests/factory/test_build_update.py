"""``appliance build update`` from an image already built: the bundle carries slot A's root (cut from the raw disk
at its partition), the kernel and initrd, and a manifest from the image's report, signed with the image's key."""

import json
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization

from appliance.errors import UpdateError
from appliance.factory.image.report import BuildReport, Partition
from appliance.factory.update import build_update
from appliance.spec import load_spec
from appliance.store.signing import load_private_key, write_keypair
from appliance.update import bundle

pytestmark = pytest.mark.skipif(shutil.which("mksquashfs") is None, reason="needs squashfs-tools")
EMBEDDINGS = '[[models]]\nid = "e"\ntask = "embeddings"\nprecision = "fp32"\nsource = { kind = "hf-folder", path = "/m" }\n'


def _spec(tmp_path, sku="cpu-x86_64-avx2"):
    path = tmp_path / f"{sku}.toml"
    path.write_text(f'[box]\nname = "box"\nsku = "{sku}"\n\n' + EMBEDDINGS)
    return load_spec(path)


def _image(tmp_path, key_pem: bytes):
    """A built image as far as build update reads it: report.json, the raw disk, vmlinuz and initrd."""
    tree = tmp_path / "tree/etc/appliance"
    tree.mkdir(parents=True)
    (tree / "vendor.pub").write_bytes(key_pem)
    root = tmp_path / "root.squashfs"
    subprocess.run(["mksquashfs", str(tmp_path / "tree"), str(root), "-quiet", "-noappend"], check=True)
    image = tmp_path / "image"
    image.mkdir()
    offset = 1 << 20
    raw = bytearray(offset) + root.read_bytes() + bytes(4096)
    (image / "appliance.raw").write_bytes(bytes(raw))
    (image / "vmlinuz").write_bytes(b"kernel")
    (image / "initrd.img").write_bytes(b"initrd")
    report = BuildReport(box_name="box", sku="cpu-x86_64-avx2", version="0.3.0", git_commit="abc",
                         source_date_epoch=1_700_000_000, recipe_digest="r", test_access=False, kernel="6.1",
                         kernel_cmdline="", store_digest="a" * 64, store_bytes=0,
                         root_squashfs_bytes=root.stat().st_size,
                         partitions=[Partition(label="root-a", type="root-x86-64", uuid="u", offset=offset,
                                               size=len(raw) - offset)],
                         artifacts=[], debian_packages=[], python_packages=[], stages_seconds={}, cache_hits={},
                         seconds=0)
    (image / "report.json").write_text(report.model_dump_json())
    return image, root


@pytest.fixture
def signing(tmp_path):
    key = write_keypair(tmp_path / "vendor.key", tmp_path / "vendor.pub")
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return tmp_path / "vendor.key", pem


def test_bundles_the_images_root_kernel_and_initrd_under_its_version(tmp_path, signing):
    key_path, pem = signing
    image, root = _image(tmp_path, pem)
    manifest = build_update(_spec(tmp_path), tmp_path / "out.bundle", image=image, signing_key=key_path, min_version="0.2.0")
    assert (manifest.version, manifest.min_version, manifest.sku) == ("0.3.0", "0.2.0", "cpu-x86_64-avx2")
    trusted = load_private_key(key_path).public_key()
    assert bundle.verify(tmp_path / "out.bundle", trusted) == manifest
    got = {f.name: r.read() for f, r in bundle.files(tmp_path / "out.bundle", trusted, manifest)}
    assert got == {"root.squashfs": root.read_bytes(), "vmlinuz": b"kernel", "initrd.img": b"initrd"}


def test_refuses_a_key_the_image_does_not_trust(tmp_path, signing):
    key_path, _ = signing
    other = write_keypair(tmp_path / "other.key", tmp_path / "other.pub")
    image, _ = _image(tmp_path, other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(UpdateError, match="the image trusts another vendor key than --signing-key"):
        build_update(_spec(tmp_path), tmp_path / "out.bundle", image=image, signing_key=key_path)
    assert not (tmp_path / "out.bundle").exists()


def test_refuses_an_image_of_another_box_or_version(tmp_path, signing):
    key_path, pem = signing
    image, _ = _image(tmp_path, pem)
    other = _spec(tmp_path, "cpu-x86_64-avx512")
    with pytest.raises(UpdateError, match="built for box on cpu-x86_64-avx2, the spec says box on cpu-x86_64-avx512"):
        build_update(other, tmp_path / "out.bundle", image=image, signing_key=key_path)
    with pytest.raises(UpdateError, match="is version 0.3.0, not 0.4.0"):
        build_update(_spec(tmp_path), tmp_path / "out.bundle", image=image, signing_key=key_path, version="0.4.0")
    report = json.loads((image / "report.json").read_text())
    assert report["version"] == "0.3.0"
