"""/opt/appliance/venv: the box's Python packages, from a wheelhouse built on the factory (runtime dependencies only)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

from appliance.factory.image.commands import in_root, run
from appliance.factory.image.recipe import REPO

VENV = "/opt/appliance/venv"
SOURCES = ("pyproject.toml", "README.md", "appliance", "healthcheck", "kernels")  # what the wheel is built from
EXTRAS = "systemd"  # sd_notify, the watchdog and journald under systemd; never the factory's torch stack


def constraints() -> str:
    """Pin every runtime dependency to the version the factory was tested with."""
    pins = sorted(f"{d.metadata['Name'].lower()}=={d.version}" for d in importlib.metadata.distributions()
                  if d.metadata["Name"] and d.metadata["Name"].lower() != "appliance")
    return "\n".join(pins) + "\n"


def wheelhouse(cache: Path) -> tuple[Path, bool]:
    """Wheels of the runtime dependencies, built once per set of pins; returns (directory, cache hit)."""
    pins = constraints()
    deps = (REPO / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pins.encode() + deps + sys.version.encode()).hexdigest()[:16]
    out = cache / f"wheels-{key}"
    if out.is_dir():
        return out, True
    tmp = cache / f"wheels-{key}.part"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "constraints.txt").write_text(pins)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--wheel-dir", str(tmp), "-c", str(tmp / "constraints.txt"), f"{REPO}[{EXTRAS}]"],
        "building the runtime wheelhouse")
    run([*pip, "download", "--no-deps", "--dest", str(tmp), "pip"], "fetching pip for the venv install")
    for own in tmp.glob("appliance-*.whl"):
        own.unlink()
    tmp.rename(out)
    return out, False


def install(root: Path, wheels: Path, work: Path) -> list[dict]:
    """Build this checkout's wheel, install it with its pinned dependencies into the root's venv, offline."""
    own, src = work / "appliance-wheel", work / "appliance-src"
    shutil.rmtree(own, ignore_errors=True)
    shutil.rmtree(src, ignore_errors=True)
    # From a copy: pip builds in the source tree, and two builds at once would share its build/ directory.
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=skip)
        elif (REPO / name).is_file():
            src.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "wheel", "--no-deps", "--wheel-dir",
         str(own), str(src)], "building the appliance wheel")
    staged = root / "tmp/wheels"
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(wheels, staged)
    for whl in own.glob("*.whl"):
        shutil.copy2(whl, staged)
    pip_whl = next(staged.glob("pip-*.whl"))
    in_root(root, ["python3", "-m", "venv", "--without-pip", VENV], "creating the venv")
    in_root(root, [f"{VENV}/bin/python", f"/tmp/wheels/{pip_whl.name}/pip", "install", "-q", "--no-index",
                   "--no-compile", "--no-cache-dir", "--disable-pip-version-check", "--find-links", "/tmp/wheels",
                   "-c", "/tmp/wheels/constraints.txt", f"appliance[{EXTRAS}]"], "installing the venv")
    shutil.rmtree(staged)
    # Hash-checked bytecode never goes stale, so squashfs' fixed timestamps cannot force recompiles on a read-only root.
    in_root(root, ["python3", "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash",
                   "-x", "/(test|tests)/",
                   "/usr/lib/python3.11", "/usr/lib/python3/dist-packages", VENV], "compiling bytecode")
    out = in_root(root, [f"{VENV}/bin/python", "-c", "import importlib.metadata as m, json; print(json.dumps("
                         "sorted([d.metadata['Name'], d.version] for d in m.distributions())))"], "listing the venv")
    return [{"name": n, "version": v} for n, v in json.loads(out)]
