"""The disk image: build time (cached, and cold with --cold), raw and qcow2 sizes, whether two builds are
bit-identical (and which partitions differ if not), power-on to /readyz under KVM (median of --runs fresh boots)
and the first chat completion's latency after ready.

Boots use the test image (built with --test-access: the same root plus a serial root shell) because the first
chat needs an API key made on the box; every boot starts from the image as built (a fresh overlay). By default
they are UEFI boots under TCG with the AVX2 test store (tests/image/avx2-chat.toml), because /dev/kvm on the
development machines is a nested PVM hypervisor that cannot run a stock kernel; --kvm boots the image's kernel
under KVM with the host CPU, for hosts where that works.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import REPO, machine_info, print_table, write_result  # noqa: E402
from vm import Vm  # noqa: E402
from wait import wait_until  # noqa: E402

MODEL = "smollm2-135m-instruct"


def build(store: Path, out: Path, cache: Path | None, *extra: str) -> float:
    cmd = [sys.executable, "-m", "appliance", "build", "image", "--spec", str(REPO / "appliance.toml"), "--out",
           str(out), "--store", str(store), *extra] + (["--cache", str(cache)] if cache else [])
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, cwd=REPO)
    return round(time.monotonic() - t0, 1)


def partition_digests(image: Path) -> dict[str, str]:
    report = json.loads((image / "report.json").read_text())
    out = {}
    with (image / "appliance.raw").open("rb") as f:
        for p in report["partitions"]:
            f.seek(p["offset"])
            out[p["label"]] = hashlib.sha256(f.read(p["size"])).hexdigest()
    return out


def boot_once(image: Path, work: Path, mode: str) -> dict:
    vm = Vm(image, work, mode=mode).start()
    try:
        def ready() -> bool:
            return httpx.get(f"{vm.url}/readyz", verify=False, timeout=5).status_code == 200

        wait_until(ready, timeout=900, interval=0.1, what="/readyz", ignore=(httpx.HTTPError,))
        to_ready = time.monotonic() - vm.started_at
        vm.login_shell()
        _, out = vm.shell("runuser -u appliance -- /opt/appliance/venv/bin/appliance keys create bench "
                          "--state-dir /var/lib/appliance")
        key = out.strip().splitlines()[-1].split()[-1]
        t0 = time.monotonic()
        r = httpx.post(f"{vm.url}/v1/chat/completions", verify=False, timeout=120,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"model": MODEL, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16,
                             "temperature": 0})
        r.raise_for_status()
        return {"power_on_to_ready_s": round(to_ready, 2), "first_chat_s": round(time.monotonic() - t0, 3)}
    finally:
        vm.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, required=True, help="the default store, built from appliance.toml")
    ap.add_argument("--boot-store", type=Path, required=True,
                    help="the store the booted image serves: built from tests/image/avx2-chat.toml under TCG, or "
                         "from appliance.toml with --kvm on an AVX-512 host")
    ap.add_argument("--kvm", action="store_true", help="boot under KVM (direct kernel boot, host CPU)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cold", action="store_true", help="also build once with an empty cache (debootstrap, wheels)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    try:
        results: dict = {"builds": {}}
        shipped, again, test = work / "shipped", work / "shipped-again", work / "test"
        if args.cold:
            results["builds"]["cold_s"] = build(args.store, work / "cold", work / "empty-cache")
        results["builds"]["cached_s"] = build(args.store, shipped, None)
        results["builds"]["cached_again_s"] = build(args.store, again, None)
        boot_spec = REPO / ("appliance.toml" if args.kvm else "tests/image/avx2-chat.toml")
        build_boot = [sys.executable, "-m", "appliance", "build", "image", "--spec", str(boot_spec), "--out", str(test),
                      "--store", str(args.boot_store), "--test-access"]
        subprocess.run(build_boot, check=True, cwd=REPO)
        a, b = (json.loads((d / "report.json").read_text()) for d in (shipped, again))
        pa, pb = partition_digests(shipped), partition_digests(again)
        results["reproducible"] = {
            "store_digest_equal": a["store_digest"] == b["store_digest"],
            "debian_packages_equal": a["debian_packages"] == b["debian_packages"],
            "python_packages_equal": a["python_packages"] == b["python_packages"],
            "raw_bit_identical": pa == pb,
            "partitions_differing": sorted(k for k in pa if pa[k] != pb.get(k)),
        }
        results["sizes_mib"] = {x["name"]: round(x["size"] / 2**20, 1) for x in a["artifacts"]}
        results["partitions_mib"] = {p["label"]: round(p["size"] / 2**20, 1) for p in a["partitions"]}
        results["root_squashfs_mib"] = round(a["root_squashfs_bytes"] / 2**20, 1)
        results["stages_s"] = a["stages_seconds"]
        mode = "kvm" if args.kvm else "uefi"
        boots = [boot_once(test, work / f"boot{i}", mode) for i in range(args.runs)]
        results["boot_mode"] = "KVM, direct kernel boot" if args.kvm else "UEFI (OVMF) under TCG, emulated CPU"
        results["boots"] = boots
        results["power_on_to_ready_s_median"] = statistics.median(b["power_on_to_ready_s"] for b in boots)
        results["first_chat_s_median"] = statistics.median(b["first_chat_s"] for b in boots)
        path = write_result("boot", {"machine": machine_info(), "parameters": {"runs": args.runs, "cold": args.cold,
                                                                               "kvm": args.kvm},
                                     "results": results})
        print_table([["figure", "value"], *[[k, json.dumps(v)] for k, v in results.items() if k != "boots"]])
        print(f"wrote {path}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
