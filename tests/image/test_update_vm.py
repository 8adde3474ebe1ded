"""A/B updates in the booted image: a signed bundle is written to the other slot, tried, blessed; a release whose
server never becomes ready spends its three tries and the box comes back on the slot it ran; a power cut while
writing leaves the running slot booting; a changed byte, another key or a downgrade is refused before a byte is
written. Markers `image` and `update`; run with `pytest -m update` (not yet in the default run: see pyproject.toml).
Every boot is UEFI under TCG (see test_image_boot.py).

The box starts on the functional test image (chat, AVX2). The good release carries embeddings only, so its slot is
ready within minutes under TCG. The broken release is the shipped image's root (an AVX-512 store) in a bundle
that says it is for this box: its server refuses the store on this CPU, as a mislabelled vendor build would.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from pathlib import Path

import httpx
import pytest
from packaging.version import Version

import images
from images import avx2_store, shipped_image, vm_image  # noqa: F401  (fixtures)
from conftest import needs_root
from vm import Vm
from wait import wait_until
from appliance.store.signing import signing_key_for_build
from appliance.update import bundle
from appliance.update.manifest import UpdateManifest

pytestmark = [pytest.mark.image, pytest.mark.update, needs_root("debootstrap and chroot build the image"),
              pytest.mark.timeout(3600)]
ARTIFACTS = images.REPO / "test-artifacts" / "image"
BOX = "runuser -u appliance -- /opt/appliance/venv/bin/appliance"
UPDATE = "/opt/appliance/venv/bin/appliance update"
STATE = "--state-dir /var/lib/appliance"
EMBEDDINGS = "all-minilm-l6-v2"
PASSWORD = "violet-harbour-lantern-57"
DISK_BYTES = 2 << 30  # flashed onto a disk twice the image's size: the data partition grows to hold an upload


def _next(version: str, step: int) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor}.{v.micro + step}"


@pytest.fixture(scope="module")
def bundles(vm_image, shipped_image, tmp_path_factory) -> dict[str, Path]:
    """good: a new release built by the factory; changed/other-key/downgrade: refused; broken: never ready."""
    if os.environ.get("APPLIANCE_TEST_BUNDLES"):  # a directory this fixture filled before, from this checkout
        given = Path(os.environ["APPLIANCE_TEST_BUNDLES"])
        return {name: given / f"{name}.bundle" for name in ("good", "other-key", "downgrade", "changed", "broken")}
    out = tmp_path_factory.mktemp("bundles")
    running = images.report(vm_image)["version"]
    store = out / "store"
    images.appliance("build", "models", "--spec", str(images.UPDATE_SPEC), "--out", str(store))
    good_image = out / "good-image"
    images.appliance("build", "image", "--spec", str(images.UPDATE_SPEC), "--store", str(store), "--out",
                     str(good_image), "--test-access", "--version", _next(running, 1))
    made = {"good": out / "good.bundle"}
    images.appliance("build", "update", "--spec", str(images.UPDATE_SPEC), "--image", str(good_image), "--out",
                     str(made["good"]))
    files = out / "files"
    with tarfile.open(made["good"]) as tar:
        tar.extractall(files, filter="data")
    manifest = UpdateManifest.model_validate_json((files / bundle.MANIFEST).read_text())
    payload = {f.name: files / f.name for f in manifest.files}
    key, _ = signing_key_for_build(None)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    made["other-key"] = bundle.write(out / "other-key.bundle", manifest, payload, Ed25519PrivateKey.generate())
    made["downgrade"] = bundle.write(out / "downgrade.bundle", manifest.model_copy(update={"version": "0.0.1"}),
                                     payload, key)
    changed = bytearray(made["good"].read_bytes())
    changed[len(changed) // 2] ^= 0x01  # inside the root image
    made["changed"] = out / "changed.bundle"
    made["changed"].write_bytes(bytes(changed))
    shipped = images.report(shipped_image)
    root = images.partition(shipped_image, "root-a", out / "shipped-root.squashfs", shipped["root_squashfs_bytes"])
    broken = {"root.squashfs": root, "vmlinuz": shipped_image / "vmlinuz", "initrd.img": shipped_image / "initrd.img"}
    made["broken"] = bundle.write(out / "broken.bundle", manifest.model_copy(update={
        "version": _next(running, 2), "store_digest": shipped["store_digest"],
        "files": [bundle.describe(path, name) for name, path in broken.items()]}), broken, key)
    return made


class Box:
    """The VM with the bundles attached as read-only disks, and a timeline of what happened when."""

    def __init__(self, vm: Vm):
        self.vm = vm
        self.key = ""
        self.setup_code = ""
        self.events: list[tuple[str, float]] = []

    def note(self, what: str) -> None:
        self.events.append((what, round(time.monotonic() - self.vm.started_at, 1)))

    def disk(self, name: str) -> str:
        return f"/dev/disk/by-id/virtio-{name}"

    def apply(self, name: str, timeout: float = 1200) -> tuple[int, str]:
        """apply from the CLI as root; returns its status and its last lines (the progress bars are left out)."""
        return self.vm.shell(f"{UPDATE} apply {self.disk(name)} {STATE} >/tmp/apply.out 2>/tmp/apply.err; s=$?; "
                             "cat /tmp/apply.out; grep -a '^error' /tmp/apply.err; (exit $s)", timeout=timeout)

    def upload(self, bundle_file: Path, timeout: float = 1800) -> dict:
        """The admin's way: the console's upload (claiming the box first), then its progress until it settles."""
        url = self.vm.url
        with httpx.Client(base_url=url, verify=False, headers={"Origin": url}, timeout=600) as web:
            wait_until(lambda: web.get("/healthz").status_code == 200, timeout=900, interval=1,
                       what="the console after the boot", ignore=(httpx.HTTPError,))
            if web.get("/console/setup").status_code == 200:
                claimed = web.post("/console/setup", data={"code": self.setup_code, "username": "admin",
                                                           "password": PASSWORD, "confirm": PASSWORD})
                assert claimed.status_code == 303, claimed.text
            else:
                assert web.post("/console/login", data={"username": "admin", "password": PASSWORD}).status_code == 303
            csrf = re.search(r'data-csrf="([^"]+)"', web.get("/console/settings").text).group(1)
            with bundle_file.open("rb") as fh:
                sent = web.put("/console/api/update?reboot=false", content=fh,
                               headers={"x-csrf-token": csrf, "Content-Type": "application/octet-stream",
                                        "Content-Length": str(bundle_file.stat().st_size)})
            assert sent.status_code == 202, sent.text
            self.note("console upload accepted")

            def settled() -> dict | None:
                progress = web.get("/console/api/update").json()["progress"]
                return progress if progress["state"] not in ("queued", "verifying", "writing") else None

            return wait_until(settled, timeout=timeout, interval=2, what="the apply service to write the slot",
                              ignore=(httpx.HTTPError,))

    def slots(self) -> str:
        """`update status --json` reduced in the VM to one short line (long lines garble on a shared console)."""
        status, out = self.vm.shell(
            f"{UPDATE} status --json {STATE} | python3 -c 'import json, sys; r = json.load(sys.stdin); "
            "print(\"SLOTS\", *[s[\"slot\"] + (\"*\" if s[\"booted\"] else \"\") + \":\" + s[\"state\"] + \":\" + "
            "s[\"version\"] for s in r[\"slots\"]], \"LAST\", (r[\"last_update\"] or {}).get(\"outcome\"))'",
            timeout=300)
        assert status == 0, out
        return re.search(r"SLOTS [^\r\n]*", out).group(0)

    def readyz(self) -> dict:
        r = httpx.get(f"{self.vm.url}/readyz", headers={"Authorization": f"Bearer {self.key}"}, verify=False,
                      timeout=10)
        return {"status": r.status_code, **r.json()}

    def reboot(self) -> int:
        mark = len(self.vm.console_text())
        self.vm._serial.sendall(b"systemctl reboot\n")
        return mark


@pytest.fixture(scope="module")
def box(vm_image, bundles, tmp_path_factory):
    vm = Vm(vm_image, tmp_path_factory.mktemp("update-vm"), drives=bundles, disk_bytes=DISK_BYTES)
    box = Box(vm.start())
    try:
        box.setup_code = vm.wait_console(r"console setup code .*?: (\w{4}-\w{4}-\w{4})", timeout=900).group(1)
        vm.login_shell(timeout=900)
        box.note("booted slot A")
        _, var = vm.shell("df -B1 --output=size /var | tail -1")
        assert int(var.split()[-1]) > DISK_BYTES - (vm_image / "appliance.raw").stat().st_size - (64 << 20), (
            f"/var did not grow into the disk: {var}")
        box.key = vm.shell(f"{BOX} keys create update-tests {STATE}", timeout=300)[1].strip().splitlines()[-1].split()[-1]
        yield box
    finally:
        vm.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "serial-update.log").write_text(vm.console_text())
        sizes = {name: path.stat().st_size for name, path in bundles.items()}
        (ARTIFACTS / "update.json").write_text(json.dumps({"bundle_bytes": sizes, "timeline_s": box.events},
                                                          indent=2) + "\n")


def test_a_changed_byte_another_key_or_a_downgrade_is_refused_before_anything_is_written(box):
    for name, reason in (("other-key", "signature does not match under the trusted vendor key"),
                         ("downgrade", "is older than the running"),
                         ("changed", "root.squashfs does not match its sha256 in the signed manifest")):
        status, out = box.apply(name)
        assert status != 0 and reason in out, (name, out)
        assert len([line for line in out.splitlines() if line.startswith("error")]) == 1, out
    assert box.slots().startswith("SLOTS a*:good:") and " b:empty:" in box.slots()
    _, head = box.vm.shell("head -c 4 /dev/disk/by-partlabel/root-b | od -An -c")
    assert "h   s   q   s" not in head, "slot B was written although every bundle was refused"


def test_a_power_cut_while_writing_leaves_the_running_slot_booting(box, bundles):
    vm = box.vm
    vm.shell(f"{UPDATE} apply {box.disk('good')} {STATE} >/tmp/apply.out 2>&1 &")

    def writing() -> bool:
        _, head = vm.shell("head -c 4 /dev/disk/by-partlabel/root-b | od -An -c")
        return "h   s   q   s" in head

    wait_until(writing, timeout=1200, interval=2, what="apply to start writing slot B")
    vm.stop()  # the power goes off mid-write
    box.note("power cut while writing slot B")
    mark = len(vm.console_text())
    vm.start()
    vm.login_shell(timeout=900, since=mark)
    box.note("booted again")
    assert box.slots() == f"SLOTS a*:good:{box.slots().split(':', 2)[2].split()[0]} b:empty: LAST None"
    progress = box.upload(bundles["good"])  # the next apply, this time from the console's settings page
    assert progress["state"] == "written" and "slot B now holds" in progress["message"], progress
    assert progress["done"] == progress["total"] > 0
    box.note("applied the good bundle from the console")
    assert " b:trying:" in box.slots() and box.slots().endswith("LAST pending")
    _, left = vm.shell("ls -A /var/lib/appliance/updates")
    assert "pending.bundle" not in left and "request.json" not in left, left


def test_a_good_update_boots_slot_b_is_blessed_and_keeps_the_keys(box, vm_image):
    vm = box.vm
    mark = box.reboot()
    box.note("reboot into slot B")
    blessed = vm.wait_console(r"boot check: (slot B [^\r\n]*ready after \d+ s; blessed)", timeout=1800, since=mark)
    box.note("slot B blessed")
    vm.login_shell(timeout=300, since=mark)
    assert "boot 1 of 3" in blessed.group(1)
    wait_until(lambda: vm.shell("systemctl is-active systemd-bless-boot.service")[1].strip() == "active",
               timeout=300, interval=2, what="systemd-bless-boot to mark slot B good")
    slots = box.slots()
    assert slots.startswith("SLOTS a:good:") and " b*:good:" in slots and slots.endswith("LAST installed"), slots
    ready = box.readyz()  # the key made on slot A still works on slot B
    assert ready["status"] == 200 and ready["models"] == [EMBEDDINGS]
    assert Version(ready["version"]) > Version(images.report(vm_image)["version"])
    r = httpx.post(f"{vm.url}/v1/embeddings", headers={"Authorization": f"Bearer {box.key}"}, verify=False,
                   json={"model": EMBEDDINGS, "input": ["kept across the update"]}, timeout=300)
    assert r.status_code == 200 and len(r.json()["data"][0]["embedding"]) == 384
    _, out = vm.shell("touch /opt/appliance/x; findmnt -no FSTYPE /")
    assert "Read-only file system" in out and "squashfs" in out


def test_an_update_that_never_becomes_ready_rolls_back_after_three_tries(box):
    vm = box.vm
    status, out = box.apply("broken")
    assert status == 0 and "slot A now holds" in out, out
    mark = box.reboot()
    box.note("reboot into the broken slot A")
    for n in (1, 2, 3):
        vm.wait_console(rf"boot check: slot A [^\r\n]*boot {n} of 3: the server is not serving: [^\r\n]*"
                        r"cpu-x86_64-avx512", timeout=1800, since=mark)
        box.note(f"slot A failed its trial boot {n}")
    back = vm.wait_console(r"boot check: (rolled back to slot B [^\r\n]*)", timeout=1800, since=mark)
    box.note("back on slot B")
    assert "did not become healthy in 3 boots" in back.group(1)
    vm.login_shell(timeout=300, since=mark)
    slots = box.slots()
    assert slots.startswith("SLOTS a:bad:") and " b*:good:" in slots and slots.endswith("LAST rolled-back"), slots
    wait_until(lambda: box.readyz()["status"] == 200, timeout=1200, interval=2, what="slot B serving again",
               ignore=(httpx.HTTPError, ValueError))
    box.note("slot B ready")
    _, history = vm.shell(f"{BOX} health --json --last 500 {STATE} | python3 -c 'import json, sys; "
                          "print(*[e[\"reason\"][:60] for e in json.load(sys.stdin)[\"history\"] "
                          "if e[\"name\"] == \"update\"], sep=\"\\n\")'", timeout=300)
    assert history.count("slot A") >= 3 and "rolled back to slot B" in history, history
