"""The GPT disk: systemd-repart lays out ESP, root A, root B and data from the recipe's definitions."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.factory.image.commands import run
from appliance.store.manifest import sha256_file

SLOT_ALIGN = 8 * 2**20
# An update's root may be this much bigger than the first before it no longer fits the other slot; kept small so
# that the default box's raw image stays within 1 GiB (the store is most of the root and barely compresses).
SLOT_HEADROOM = 1.08


def slot_bytes(root_image: Path, at_least: int = 0) -> int:
    """Each root slot: this root plus headroom, or more where the vendor reserves room for bigger updates."""
    want = max(int(root_image.stat().st_size * SLOT_HEADROOM), at_least)
    return -(-want // SLOT_ALIGN) * SLOT_ALIGN


def definitions(recipe_dir: Path, out: Path, values: dict[str, str]) -> Path:
    """The recipe's repart.d with this build's paths, sizes and UUIDs filled in."""
    out.mkdir(parents=True, exist_ok=True)
    for conf in sorted((recipe_dir / "repart.d").glob("*.conf")):
        text = conf.read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        (out / conf.name).write_text(text)
    return out


def assemble(defs: Path, raw: Path, seed: str) -> list[dict]:
    """Create the raw disk with systemd-repart; returns its partition table (label, type, uuid, offset, size)."""
    raw.unlink(missing_ok=True)
    out = run(["systemd-repart", "--empty=create", "--size=auto", "--dry-run=no", "--pretty=no", "--json=short",
               f"--seed={seed}", f"--definitions={defs}", str(raw)], "systemd-repart")
    table = json.loads(out)
    return [{"label": p.get("label"), "type": p.get("type"), "uuid": p.get("uuid"), "offset": p.get("offset"),
             "size": p.get("raw_size")} for p in table]


def qcow2(raw: Path, out: Path) -> Path:
    out.unlink(missing_ok=True)
    run(["qemu-img", "convert", "-q", "-c", "-O", "qcow2", str(raw), str(out)], "converting to qcow2")
    return out


def write_sums(out_dir: Path, names: list[str]) -> dict[str, str]:
    sums = {name: sha256_file(out_dir / name) for name in names}
    (out_dir / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    return sums
