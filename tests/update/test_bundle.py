import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fake_box import box  # noqa: F401  (the fixture)
from appliance.errors import UpdateError
from appliance.update import bundle


def test_a_signed_bundle_verifies_and_streams_its_files_in_order(box):
    path = box.bundle()
    seen = []
    manifest = bundle.verify(path, box.key.public_key(), seen.append)
    assert manifest.version == "0.2.0" and sum(seen) == manifest.size
    names = [(f.name, len(reader.read())) for f, reader in bundle.files(path, box.key.public_key(), manifest)]
    assert names == [("root.squashfs", 300_000), ("vmlinuz", 5000), ("initrd.img", 7000)]


def test_a_changed_byte_is_refused_naming_the_file(box):
    path = box.bundle()
    data = bytearray(path.read_bytes())
    data[data.index(b"K" * 100) + 50] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(UpdateError, match="vmlinuz does not match its sha256 in the signed manifest"):
        bundle.verify(path, box.key.public_key())


def test_another_key_is_refused_before_any_payload_is_read(box):
    path = box.bundle(key=Ed25519PrivateKey.generate())
    with pytest.raises(UpdateError, match="signature does not match under the trusted vendor key"):
        bundle.read_manifest(path, box.key.public_key())


def test_a_changed_manifest_breaks_the_signature(box):
    path = box.bundle()
    data = path.read_bytes().replace(b'"version": "0.2.0"', b'"version": "9.2.0"', 1)
    path.write_bytes(data)
    with pytest.raises(UpdateError, match="signature does not match"):
        bundle.read_manifest(path, box.key.public_key())


def test_a_truncated_bundle_is_refused(box):
    path = box.bundle()
    path.write_bytes(path.read_bytes()[:200_000])
    with pytest.raises(UpdateError, match="root.squashfs|incomplete"):
        bundle.verify(path, box.key.public_key())


def test_something_else_is_not_a_bundle(box):
    other = box.root / "notes.txt"
    other.write_text("hello")
    with pytest.raises(UpdateError, match="not an update bundle"):
        bundle.read_manifest(other, box.key.public_key())
    with pytest.raises(UpdateError, match="no such bundle"):
        bundle.read_manifest(box.root / "missing.bundle", box.key.public_key())


def test_rebuilding_the_same_bundle_gives_the_same_bytes(box):
    assert box.bundle("one.bundle").read_bytes() == box.bundle("two.bundle").read_bytes()
