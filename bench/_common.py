"""Helpers shared by the benchmark scripts: the machine block, medians, percentiles, result files.

Nothing here identifies the host (no hostname, no user, no paths under
home); the machine block is what is needed to compare two result files.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"


def _cpuinfo() -> tuple[str, int, int, list[str]]:
    """CPU model, physical cores, logical CPUs and flags, from /proc/cpuinfo."""
    model, flags, cores, logical = "unknown", [], set(), 0
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", os.cpu_count() or 1, os.cpu_count() or 1, []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.splitlines():
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        if "processor" not in fields:
            continue
        logical += 1
        model = fields.get("model name", model)
        flags = fields.get("flags", "").split() or flags
        cores.add((fields.get("physical id", "0"), fields.get("core id", str(logical))))
    return model, len(cores) or logical, logical, flags


def physical_cores() -> int:
    """Physical cores usable by this process (affinity respected), at least 1."""
    _, phys, logical, _ = _cpuinfo()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = logical
    return max(1, min(phys, usable))


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def llama_anchor(args, binding: bool) -> None:
    """Fill ``args.llama_bin`` / ``args.llama_python`` from bench/llamacpp_build.py unless given on the command line."""
    from llamacpp_build import ensure

    if args.llama_bin is not None and (not binding or args.llama_python is not None):
        return
    anchor = ensure(args.llama_cache, binding=binding)
    if args.llama_bin is None:
        args.llama_bin = anchor.bin
    if binding and args.llama_python is None:
        args.llama_python = anchor.python


def llama_versions(llama_python: Path | None, llama_bin: Path | None) -> dict:
    """llama-cpp-python's version (in its own venv), the llama.cpp binaries' build line and cmake flags."""
    out: dict = {"llama_cpp_python": None, "llama_cpp_build": None, "llama_cpp_cmake": None}
    marker = Path(llama_bin).parent.parent / "build.json" if llama_bin else None
    if marker and marker.exists():
        info = json.loads(marker.read_text())
        keys = ("llama_cpp_python", "sdist_sha256", "profile", "cmake_flags", "compiler")
        out["llama_cpp_cmake"] = {k: info.get(k) for k in keys}
    if llama_python and Path(llama_python).exists():
        try:
            proc = subprocess.run([str(llama_python), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                                  capture_output=True, text=True, timeout=60)
            out["llama_cpp_python"] = proc.stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    for name in ("llama-bench", "llama-server"):
        exe = Path(llama_bin) / name if llama_bin else None
        if exe and exe.exists():
            try:
                proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=30)
                lines = [ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
                out["llama_cpp_build"] = " | ".join(ln for ln in lines if ln.startswith(("version", "built")))
                break
            except (OSError, subprocess.TimeoutExpired):
                pass
    return out


def machine_info(llama_python: Path | None = None, llama_bin: Path | None = None) -> dict:
    """What the numbers were measured on; hostname-free."""
    model, phys, logical, flags = _cpuinfo()
    interesting = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"]
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    info = {
        "cpu_model": model,
        "physical_cores": phys,
        "logical_cpus": logical,
        "usable_cpus": affinity,
        "cpu_flags": [f for f in interesting if f in flags],
        "ram_gib": _mem_total_gib(),
        "arch": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "onnxruntime": _version("onnxruntime"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "load_avg_at_start": [round(x, 2) for x in load] if load else None,
    }
    if llama_python or llama_bin:
        info.update(llama_versions(llama_python, llama_bin))
    return info


def find_chat_model(store: Path, model_id: str | None):
    """The store's chat model folder and manifest (the one named, or the first chat model)."""
    from appliance.store.manifest import Manifest

    index = json.loads((store / "index.json").read_text())
    ids = [m["id"] for m in index["models"] if m.get("task") == "chat"]
    if model_id is None:
        if not ids:
            raise SystemExit(f"{store} has no chat model")
        model_id = ids[0]
    if model_id not in ids:
        raise SystemExit(f"{store} has no chat model {model_id!r}; it has {ids}")
    manifest = Manifest.model_validate_json((store / model_id / "manifest.json").read_text())
    return store / model_id, manifest


def resolve_gguf(spec_path: Path, model_id: str):
    """The model's source as the factory resolves it: (LocalSource, cache dir)."""
    from appliance.factory.sources import default_cache_dir, resolve_source
    from appliance.spec import load_spec

    spec = load_spec(spec_path)
    for m in spec.models:
        if m.id == model_id:
            cache = default_cache_dir()
            return resolve_source(m.source, m.id, cache), cache
    raise SystemExit(f"{spec_path} has no model {model_id!r}")


def stat(samples: list[float]) -> dict:
    """Raw samples with their median (None when there are none)."""
    return {"samples": [round(s, 6) for s in samples], "median": round(statistics.median(samples), 6) if samples else None}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b rounded, or None when either is missing or b is zero."""
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 4)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def git_state() -> dict:
    """The checkout the numbers came from: HEAD and whether anything differs from it (untracked files too),
    leaving out bench/results/, which the benchmarks themselves write."""
    def git(*a: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout if proc.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--", ".", ":(exclude)bench/results")
    return {"commit": commit.strip() if commit else None,
            "dirty": bool(status.strip()) if status is not None else None}


def write_result(name: str, data: dict, out: Path | None = None) -> Path:
    """Write the result JSON, with the git block beside the machine block, to ``out`` or
    bench/results/<name>-<UTC date>.json; return the path."""
    path = out or RESULTS / f"{name}-{utc_now().strftime('%Y-%m-%d')}.json"
    git = git_state()
    ordered: dict = {}
    for k, v in data.items():
        if k != "git":
            ordered[k] = v
        if k == "machine":
            ordered["git"] = git
    ordered.setdefault("git", git)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ordered, indent=2) + "\n")
    return path


def print_table(rows: list[list[str]]) -> None:
    """Print rows as a plain aligned table (first row is the header)."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for n, r in enumerate(rows):
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def fmt(x, digits: int = 1) -> str:
    """A number for the table, or '-' when missing."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)
