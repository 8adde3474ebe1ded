"""Build the llama.cpp anchor the benchmarks compare against, the same way on any machine.

The comparison is only fair if llama.cpp is built from a pinned source with
pinned CPU flags, never ``-march=native``: the llama-cpp-python sdist (its
vendored llama.cpp) is compiled once with cmake into llama-bench,
llama-batched-bench, llama-server and the shared libraries, and a venv gets
the llama-cpp-python package wired to those same libraries, so the Python
binding and the binaries run identical code. AMX is always off: some CPUs
advertise it in cpuid but fault on its instructions.

Everything lives under ``--cache`` in a folder named by version and flags;
a finished build is reused at once. ``python bench/llamacpp_build.py``
builds (or finds) it and prints the paths; the benchmarks call ``ensure``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
DEFAULT_CACHE = Path("~/.cache/appliance-bench")
TARGETS = ("llama-bench", "llama-batched-bench", "llama-server")
BINDING_DEPS = ("numpy==2.4.6", "typing-extensions==4.16.0", "diskcache==5.6.3", "jinja2==3.1.6", "markupsafe==3.0.4")

_AMX_OFF = {"GGML_AMX_TILE": "OFF", "GGML_AMX_INT8": "OFF", "GGML_AMX_BF16": "OFF"}
_AVX2 = {"GGML_AVX": "ON", "GGML_AVX2": "ON", "GGML_FMA": "ON", "GGML_F16C": "ON", "GGML_BMI2": "ON",
         "GGML_AVX_VNNI": "OFF", "GGML_AVX512": "OFF", "GGML_AVX512_VBMI": "OFF", "GGML_AVX512_VNNI": "OFF",
         "GGML_AVX512_BF16": "OFF", **_AMX_OFF}
PROFILES = {
    # the appliance's cpu-x86_64-avx512 SKU; the flags of the committed 2026-11-23 results
    "x86-64-avx512": ({**_AVX2, "GGML_AVX512": "ON", "GGML_AVX512_VBMI": "ON", "GGML_AVX512_VNNI": "ON",
                       "GGML_AVX512_BF16": "ON"},
                      ["avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512bw", "avx512dq",
                       "avx512vl", "avx512vbmi", "avx512_vnni", "avx512_bf16"]),
    "x86-64-avx2": (_AVX2, ["avx", "avx2", "fma", "f16c", "bmi2"]),
}
COMMON_FLAGS = {"CMAKE_BUILD_TYPE": "Release", "GGML_NATIVE": "OFF", "GGML_CPU_ALL_VARIANTS": "OFF",
                "GGML_BACKEND_DL": "OFF", "GGML_OPENMP": "ON", "BUILD_SHARED_LIBS": "ON", "LLAMA_CURL": "OFF",
                "LLAMA_BUILD_TESTS": "OFF", "LLAMA_BUILD_EXAMPLES": "OFF", "LLAMA_BUILD_TOOLS": "ON",
                "LLAMA_BUILD_SERVER": "ON"}


@dataclass
class Anchor:
    """Where a finished build is: the binaries' folder, the binding's interpreter, and how it was built."""

    bin: Path
    python: Path | None
    info: dict


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def pick_profile(name: str) -> str:
    """The named profile, or for 'auto' the widest one this CPU supports."""
    have = _cpu_flags()
    if name != "auto":
        missing = sorted(set(PROFILES[name][1]) - have)
        if missing and platform.machine() == "x86_64":
            raise SystemExit(f"profile {name} needs CPU flags this machine lacks: {missing}")
        return name
    for prof, (_, needs) in PROFILES.items():
        if set(needs) <= have:
            return prof
    raise SystemExit(f"no llama.cpp build profile fits this CPU ({platform.machine()}); "
                     f"known profiles: {sorted(PROFILES)}")


def cmake_flags(profile: str) -> dict[str, str]:
    return {**COMMON_FLAGS, **PROFILES[profile][0]}


def build_key(profile: str) -> str:
    flags = cmake_flags(profile)
    digest = hashlib.sha256(json.dumps([VERSION, SDIST_SHA256, flags, list(TARGETS)], sort_keys=True).encode())
    return f"llama-cpp-python-{VERSION}-{profile}-{digest.hexdigest()[:10]}"


def _run(cmd: list[str], log, **kw) -> None:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(cmd)}; see {log.name}")


def _nice() -> list[str]:
    return ["nice", "-n", "19"] if shutil.which("nice") else []


def _need_tools() -> None:
    missing = [t for t in ("cmake", "c++", "cc", "make") if not shutil.which(t)]
    if missing:
        raise SystemExit(f"building llama.cpp needs {missing}; on Debian/Ubuntu: "
                         "apt-get install -y cmake build-essential")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_sdist(cache: Path, log) -> Path:
    """The pinned sdist, downloaded once with pip and checked against its sha256."""
    dest = cache / "sdist"
    path = dest / f"llama_cpp_python-{VERSION}.tar.gz"
    if not path.exists():
        dest.mkdir(parents=True, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              f"llama-cpp-python=={VERSION}", "-d", str(dest)], log)
    got = _sha256(path)
    if got != SDIST_SHA256:
        raise SystemExit(f"{path} has sha256 {got}, expected {SDIST_SHA256}; delete it and rerun")
    return path


def _compiler() -> str:
    try:
        out = subprocess.run(["c++", "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def _build_binaries(sdist: Path, root: Path, flags: dict, jobs: int, log) -> None:
    src = root / "src"
    if not (src / "CMakeLists.txt").exists():
        shutil.rmtree(src, ignore_errors=True)
        tmp = root / "src.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        (tmp / f"llama_cpp_python-{VERSION}").rename(src)
        tmp.rmdir()
    build = root / "build"
    _run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(build)]
         + [f"-D{k}={v}" for k, v in flags.items()], log)
    _run(_nice() + ["cmake", "--build", str(build), "-j", str(jobs), "--target", *TARGETS, "llama"], log)


def _build_binding(root: Path, log) -> Path:
    """A venv with the llama_cpp package whose lib/ points at the cmake build's shared libraries."""
    venv = root / f"venv-py{sys.version_info.major}.{sys.version_info.minor}"
    py = venv / "bin" / "python"
    if not py.exists():
        _run([sys.executable, "-m", "venv", "--clear", str(venv)], log)
    _run([str(py), "-m", "pip", "install", "--quiet", *BINDING_DEPS], log)
    # LLAMA_BUILD=OFF: only the Python package is installed; its libraries come from the build above
    env = {**os.environ, "CMAKE_ARGS": "-DLLAMA_BUILD=OFF -DLLAVA_BUILD=OFF"}
    _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--force-reinstall",
          str(root / "src")], log, env=env)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    lib = Path(site) / "llama_cpp" / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    for so in sorted((root / "build" / "bin").glob("lib*.so*")):
        link = lib / so.name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(so)
    probe = subprocess.run([str(py), "-c", "import llama_cpp; print(llama_cpp.__version__); "
                            "print(llama_cpp.llama_print_system_info().decode())"],
                           capture_output=True, text=True, timeout=120)
    log.write(probe.stdout + probe.stderr)
    if probe.returncode != 0 or probe.stdout.splitlines()[:1] != [VERSION]:
        raise SystemExit(f"the llama-cpp-python binding in {venv} does not load; see {log.name}")
    return py


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(cache: Path | None = None, profile: str = "auto", binding: bool = True, jobs: int | None = None,
           quiet: bool = False) -> Anchor:
    """The anchor for this machine, built on first use (minutes) and found at once afterwards."""
    cache = (cache or DEFAULT_CACHE).expanduser().resolve()
    profile = pick_profile(profile)
    flags = cmake_flags(profile)
    root = cache / build_key(profile)
    marker = root / "build.json"
    bin_dir = root / "build" / "bin"
    venv_py = root / f"venv-py{sys.version_info.major}.{sys.version_info.minor}" / "bin" / "python"
    say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))

    def done() -> dict | None:
        if not marker.exists() or not all((bin_dir / t).exists() for t in TARGETS):
            return None
        info = json.loads(marker.read_text())
        if binding and not (venv_py.exists() and info.get("binding_python") == str(venv_py)
                            and info.get("binding_deps") == list(BINDING_DEPS)):
            return None
        return info

    info = done()
    if info is None:
        with _locked(cache / f"{root.name}.lock"):
            info = done()
            if info is None:
                info = _build(cache, root, profile, flags, binding, jobs or os.cpu_count() or 1, say)
    return Anchor(bin_dir, venv_py if binding else None, info)


def _build(cache: Path, root: Path, profile: str, flags: dict, binding: bool, jobs: int, say) -> dict:
    _need_tools()
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "build.json"
    info = json.loads(marker.read_text()) if marker.exists() else {}
    log_path = root / "build.log"
    say(f"building the llama.cpp anchor in {root} (log: {log_path}); this takes minutes")
    with log_path.open("a") as log:
        if not all((root / "build" / "bin" / t).exists() for t in TARGETS) or not info:
            t0 = time.monotonic()
            sdist = fetch_sdist(cache, log)
            _build_binaries(sdist, root, flags, jobs, log)
            info = {"llama_cpp_python": VERSION, "sdist_sha256": SDIST_SHA256, "profile": profile,
                    "cmake_flags": flags, "targets": list(TARGETS), "compiler": _compiler(),
                    "jobs": jobs, "binaries_build_s": round(time.monotonic() - t0, 1)}
            marker.write_text(json.dumps(info, indent=2) + "\n")
        if binding:
            t0 = time.monotonic()
            info["binding_python"] = str(_build_binding(root, log))
            info["binding_deps"] = list(BINDING_DEPS)
            info["binding_build_s"] = round(time.monotonic() - t0, 1)
            marker.write_text(json.dumps(info, indent=2) + "\n")
    say(f"llama.cpp anchor ready: {root / 'build' / 'bin'}")
    return info


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="folder for the sdist, builds and venvs")
    p.add_argument("--profile", default="auto", choices=["auto", *PROFILES], help="CPU flag set")
    p.add_argument("--no-binding", action="store_true", help="only the binaries, no llama-cpp-python venv")
    p.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, help="parallel compile jobs")
    args = p.parse_args(argv)
    t0 = time.monotonic()
    a = ensure(args.cache, args.profile, binding=not args.no_binding, jobs=args.jobs)
    print(json.dumps({"llama_bin": str(a.bin), "llama_python": str(a.python) if a.python else None,
                      "seconds": round(time.monotonic() - t0, 1), **a.info}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
