"""The images and update bundles the VM tests boot and apply, built once per session through the CLI.

Set APPLIANCE_TEST_IMAGE (built with --test-access --slot-mib 448 from avx2-chat.toml), APPLIANCE_TEST_SHIPPED_IMAGE
(built from appliance.toml without either) and APPLIANCE_TEST_AVX2_STORE to reuse what was already built from this
checkout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AVX2_SPEC = Path(__file__).with_name("avx2-chat.toml")
UPDATE_SPEC = Path(__file__).with_name("avx2-embeddings.toml")
# Room in each root slot for the update tests' bundles, the shipped image's root among them.
SLOT_MIB = 448


def appliance(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="session")
def avx2_store(tmp_path_factory) -> Path:
    if os.environ.get("APPLIANCE_TEST_AVX2_STORE"):
        return Path(os.environ["APPLIANCE_TEST_AVX2_STORE"])
    out = tmp_path_factory.mktemp("avx2-store") / "store"
    appliance("build", "models", "--spec", str(AVX2_SPEC), "--out", str(out))
    return out


@pytest.fixture(scope="session")
def vm_image(avx2_store, tmp_path_factory) -> Path:
    if os.environ.get("APPLIANCE_TEST_IMAGE"):
        return Path(os.environ["APPLIANCE_TEST_IMAGE"])
    out = tmp_path_factory.mktemp("image-test")
    appliance("build", "image", "--spec", str(AVX2_SPEC), "--out", str(out), "--store", str(avx2_store),
              "--test-access", "--slot-mib", str(SLOT_MIB))
    return out


@pytest.fixture(scope="session")
def shipped_image(default_store, tmp_path_factory) -> Path:
    if os.environ.get("APPLIANCE_TEST_SHIPPED_IMAGE"):
        return Path(os.environ["APPLIANCE_TEST_SHIPPED_IMAGE"])
    out = tmp_path_factory.mktemp("image-shipped")
    appliance("build", "image", "--spec", str(REPO / "appliance.toml"), "--out", str(out), "--store",
              str(default_store))
    return out


def report(image: Path) -> dict:
    return json.loads((image / "report.json").read_text())


def partition(image: Path, label: str, out: Path, size: int | None = None) -> Path:
    p = next(p for p in report(image)["partitions"] if p["label"] == label)
    with (image / "appliance.raw").open("rb") as src, out.open("wb") as dst:
        src.seek(p["offset"])
        remaining = size or p["size"]
        while remaining:
            block = src.read(min(remaining, 1 << 22))
            dst.write(block)
            remaining -= len(block)
    return out
