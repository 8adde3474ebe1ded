"""Golden tokens as the SKU's CPU computes them, when the build host's CPU is another kind (see
``CpuEmulation`` in the SKU profile): the tuned engine runs once more under qemu-user with the SKU's CPU model.

Slow (minutes: every vector instruction is emulated), exact (the VM tests boot the image on the same TCG and get
the same tokens), and only for chat, whose golden test compares tokens; embeddings and images compare with a
tolerance that another instruction set stays well within.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from appliance.store.manifest import LlmEngineConfig
from appliance.errors import ApplianceError
from appliance.sku.profiles import SkuProfile

EMULATOR = "qemu-x86_64"
CONTEXT = 512


def needed(profile: SkuProfile, fingerprint: dict) -> bool:
    if profile.emulation is None:
        return False
    usable = {f for f in fingerprint.get("cpu_flags", []) if fingerprint.get("probed", {}).get(f) is not False}
    return bool(usable & set(profile.emulation.when_host_has))


def describe(profile: SkuProfile) -> str:
    return f"{EMULATOR} -cpu {profile.emulation.qemu_cpu}"


def golden_tokens(profile: SkuProfile, model_dir: Path, cfg: LlmEngineConfig, ids: list[int], n: int,
                  chunk: int) -> list[int]:
    if shutil.which(EMULATOR) is None:
        raise ApplianceError(f"SKU {profile.name}: this build host's CPU has instructions the SKU lacks, so its golden "
                             f"tokens are computed under {EMULATOR}, which is not installed; apt-get install "
                             "qemu-user (or build on a host of the SKU's CPU kind)")
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"model_dir": str(model_dir), "engine": cfg.model_dump(mode="json"),
                                       "ids": ids, "n": n, "chunk": chunk}))
        proc = subprocess.run([EMULATOR, "-cpu", profile.emulation.qemu_cpu, sys.executable, "-m", __name__,
                               str(request)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ApplianceError(f"SKU {profile.name}: the golden run under {describe(profile)} failed "
                             f"(exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run(request: Path) -> list[int]:
    from appliance.engine.cpu_ort import CpuOrtLlm
    from appliance.engine.greedy import engine_greedy

    r = json.loads(request.read_text())
    engine = CpuOrtLlm(Path(r["model_dir"]), LlmEngineConfig.model_validate(r["engine"]), max_batch=2,
                       context_length=CONTEXT)
    return engine_greedy(engine, [r["ids"]], r["n"], r["chunk"])[0]


if __name__ == "__main__":
    print(json.dumps(_run(Path(sys.argv[1]))))
