"""The built disk image boots in qemu and is the box: ready, the same answers as the host, the console, recovery,
and state that survives a reboot on a read-only root. Marker `image`; `.ci/run` runs it.

Every boot here is UEFI (OVMF, systemd-boot from the disk) under TCG: these machines' nested hypervisor (PVM)
runs only kernels built for it, so KVM cannot start a stock Debian kernel (see tests/vm.py). TCG has AVX2 and no
AVX-512, so the functional image carries a store built for the AVX2 profile (avx2-chat.toml), while the image as
shipped (default spec, AVX-512 store) must boot and refuse its store with the reason on the console. The images
are built in images.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import CHAT_MODEL, needs_root
import images
from images import avx2_store, shipped_image, vm_image  # noqa: F401  (fixtures)
from vm import TCG_CPU, Vm
from wait import wait_until

# An emulated CPU boots and loads slowly: each test's budget covers its share of the VM's boots.
pytestmark = [pytest.mark.image, needs_root("debootstrap and chroot build the image"), pytest.mark.timeout(2400)]
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "image"
SKU_REFUSAL = r"appliance: not serving: .{0,300}?engines were built for SKU cpu-x86_64-avx512, and this host does not match it"


def test_shipped_image_has_no_door_and_fits(shipped_image, tmp_path):
    """No root shell, no way to edit the kernel command line at boot, root locked; within the 1 GiB target."""
    report = images.report(shipped_image)
    assert report["test_access"] is False
    root = images.partition(shipped_image, "root-a", tmp_path / "root.squashfs")
    listing = subprocess.run(["unsquashfs", "-l", str(root)], capture_output=True, text=True, check=True).stdout
    assert "opt/appliance/store/index.json" in listing and "etc/appliance/vendor.pub" in listing
    assert "autologin" not in listing and "sshd" not in listing
    shadow = subprocess.run(["unsquashfs", "-cat", str(root), "etc/shadow"], capture_output=True, text=True,
                            check=True).stdout
    assert re.search(r"^root:[*!]", shadow, re.M), "root must have no password on a shipped image"
    esp = images.partition(shipped_image, "esp", tmp_path / "esp.vfat")
    loader = subprocess.run(["mtype", "-i", str(esp), "::/loader/loader.conf"], capture_output=True, text=True,
                            check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert "editor no" in loader
    assert [p["label"] for p in report["partitions"]] == ["esp", "root-a", "root-b", "data"]
    raw = next(a for a in report["artifacts"] if a["name"] == "appliance.raw")
    assert raw["size"] <= 2**30, f"raw image is {raw['size'] / 2**20:.0f} MiB, the target is 1 GiB"


def test_images_carry_their_store_and_the_same_packages(vm_image, shipped_image, default_store, avx2_store):
    """Each image carries exactly the store it was given; one recipe gives one package list, whatever the spec."""
    a, b = images.report(vm_image), images.report(shipped_image)
    assert a["store_digest"] == hashlib.sha256((avx2_store / "index.json").read_bytes()).hexdigest()
    assert b["store_digest"] == hashlib.sha256((default_store / "index.json").read_bytes()).hexdigest()
    assert a["debian_packages"] == b["debian_packages"] and a["python_packages"] == b["python_packages"]
    assert (a["test_access"], b["test_access"]) == (True, False)


def test_disk_boots_through_uefi_and_refuses_a_store_for_another_cpu(shipped_image, tmp_path):
    """OVMF under TCG (no AVX-512): systemd-boot starts the kernel from the disk alone, first boot prints the setup
    code, and the server refuses the AVX-512 store with its reason on the box's console."""
    vm = Vm(shipped_image, tmp_path / "uefi").start()
    try:
        vm.wait_console(r"console setup code .*?: (\w{4}-\w{4}-\w{4})", timeout=900)
        vm.wait_console(SKU_REFUSAL, timeout=900)
    finally:
        vm.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "serial-uefi.log").write_text(vm.console_text())


class Booted:
    """The test image running, with what the tests learn along the way."""

    def __init__(self, vm: Vm) -> None:
        self.vm = vm
        self.key = ""
        self.setup_code = ""
        self.http_seconds = 0.0
        self.ready_seconds: float | None = None
        self.not_serving = ""

    def client(self):
        from openai import OpenAI

        return OpenAI(base_url=f"{self.vm.url}/v1", api_key=self.key, max_retries=0, timeout=600,
                      http_client=httpx.Client(verify=False))

    def as_box(self, command: str, timeout: float = 300) -> str:
        """An `appliance` command in the VM as the service user, with the box's state directory."""
        status, out = self.vm.shell(f"runuser -u appliance -- /opt/appliance/venv/bin/appliance {command} "
                                    "--state-dir /var/lib/appliance", timeout=timeout)
        assert status == 0, out
        return out

    def restarts(self) -> tuple[int, str]:
        """The restart record, reduced in the VM to one short line: long output on a serial console that the
        kernel and journald also write to can come back garbled."""
        status, out = self.vm.shell(
            "runuser -u appliance -- /opt/appliance/venv/bin/appliance health --json --state-dir /var/lib/appliance"
            " | python3 -c 'import json, sys; r = json.load(sys.stdin)[\"restarts\"]; "
            "print(\"RESTARTS\", r[\"count\"], (r[\"last\"] or {}).get(\"reason\", \"\"))'", timeout=300)
        assert status == 0, out
        m = re.search(r"RESTARTS (\d+) ?([^\r\n]*)", out)
        assert m, out
        return int(m.group(1)), m.group(2)

    def require_serving(self) -> None:
        assert not self.not_serving, f"the VM refused its AVX2 store: {self.not_serving}"


def _status(url: str, path: str, key: str = "") -> int:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{url}{path}", headers=headers, verify=False, timeout=10).status_code


def _settled(box: Booted) -> bool:
    """Ready, or the server said on the console why it will not serve."""
    if _status(box.vm.url, "/readyz") == 200:
        box.ready_seconds = time.monotonic() - box.vm.started_at
        return True
    m = re.search(r"appliance: not serving: ([^\r\n]+)", box.vm.console_text())
    box.not_serving = m.group(1) if m else ""
    return bool(m)


@pytest.fixture(scope="module")
def booted(vm_image, tmp_path_factory):
    vm = Vm(vm_image, tmp_path_factory.mktemp("vm")).start()
    box = Booted(vm)
    try:
        box.setup_code = vm.wait_console(r"console setup code .*?: (\w{4}-\w{4}-\w{4})", timeout=900).group(1)
        wait_until(lambda: _status(vm.url, "/healthz") == 200, timeout=900, interval=0.5, what="HTTP from the VM",
                   ignore=(httpx.HTTPError,), details=lambda: vm.console_text()[-3000:])
        box.http_seconds = time.monotonic() - vm.started_at
        wait_until(lambda: _settled(box), timeout=1200, interval=0.5, what="/readyz 200 or the reason not to serve",
                   ignore=(httpx.HTTPError,), details=lambda: vm.console_text()[-3000:])
        vm.login_shell()
        box.key = box.as_box("keys create vm-tests").strip().splitlines()[-1].split()[-1]
        yield box
    finally:
        vm.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "serial-functional.log").write_text(vm.console_text())
        (ARTIFACTS / "boot.json").write_text(json.dumps({
            "power_on_to_https_s": round(box.http_seconds, 1),
            "power_on_to_ready_s": box.ready_seconds and round(box.ready_seconds, 1),
            "not_serving": box.not_serving}) + "\n")


def test_power_on_to_ready(booted):
    booted.require_serving()
    details = httpx.get(f"{booted.vm.url}/readyz", headers={"Authorization": f"Bearer {booted.key}"},
                        verify=False, timeout=10).json()
    assert details["ready"] is True and CHAT_MODEL in details["models"]


def test_same_greedy_answer_as_the_host_on_the_skus_cpu(booted, avx2_store):
    """Through the API in the VM, the image's store answers exactly as the factory's run of the same engine did on
    the SKU's CPU. This host's own CPU has AVX-512, whose kernels part ways from AVX2's at a near tie, so the host
    run is the factory's golden run under qemu-user with the AVX2 CPU model (the manifest says so)."""
    booted.require_serving()
    manifest = json.loads((avx2_store / CHAT_MODEL / "manifest.json").read_text())
    golden = manifest["golden"]
    assert golden["computed_on"] == f"qemu-x86_64 -cpu {TCG_CPU}"
    from tokenizers import Tokenizer

    expected = Tokenizer.from_file(str(avx2_store / CHAT_MODEL / manifest["tokenizer"])).decode(
        golden["expected_tokens"], skip_special_tokens=True)
    answer = booted.client().chat.completions.create(model=CHAT_MODEL, messages=golden["messages"], temperature=0,
                                                     max_tokens=len(golden["expected_tokens"]), seed=0)
    assert answer.choices[0].message.content == expected


def test_console_setup_with_the_code_from_the_serial_console(booted):
    url = booted.vm.url
    with httpx.Client(base_url=url, verify=False, headers={"Origin": url}, timeout=30) as web:
        page = web.get("/console/setup")
        assert page.status_code == 200 and 'name="code"' in page.text
        done = web.post("/console/setup", data={"code": booted.setup_code, "username": "admin",
                                                 "password": "violet-harbour-lantern-57", "confirm":
                                                 "violet-harbour-lantern-57"})
        assert done.status_code == 303 and done.headers["location"] == "/console"
        assert web.get("/console").status_code == 200


def test_systemd_restarts_a_killed_server_and_the_monitor_records_it(booted):
    vm = booted.vm
    _, show = vm.shell("systemctl show appliance-server -p ActiveState -p WatchdogUSec -p MainPID")
    props = dict(line.split("=", 1) for line in show.split() if "=" in line)
    assert props["ActiveState"] == "active" and props["WatchdogUSec"] == "30s"
    vm.shell(f"kill -9 {props['MainPID']}")

    def restarted() -> bool:
        """A new server process: starting (verifying the store and self-testing takes minutes under TCG) or up."""
        _, out = vm.shell("systemctl show appliance-server -p ActiveState -p MainPID")
        now = dict(line.split("=", 1) for line in out.split() if "=" in line)
        return now["ActiveState"] in ("activating", "active") and now["MainPID"] not in ("0", props["MainPID"])

    wait_until(restarted, timeout=300, interval=1, what="systemd to restart the killed server")
    count, reason = booted.restarts()
    assert count >= 1 and "KILL" in reason, (count, reason)


def test_state_survives_a_reboot_on_a_read_only_root(booted):
    vm = booted.vm
    mark = len(vm.console_text())
    vm._serial.sendall(b"systemctl reboot\n")
    vm.wait_console(r"root@appliance", timeout=900, since=mark)
    vm.login_shell()
    wait_until(lambda: _status(vm.url, "/healthz") == 200, timeout=900, interval=0.5, what="HTTP after the reboot",
               ignore=(httpx.HTTPError,))
    assert _status(vm.url, "/readyz", booted.key) != 401, "the API key made before the reboot is gone"
    assert _status(vm.url, "/readyz", "sk-appl-not-a-key") == 401
    url = vm.url
    with httpx.Client(base_url=url, verify=False, headers={"Origin": url}, timeout=30) as web:
        assert web.get("/console/setup").headers.get("location") == "/console/login"
        signed_in = web.post("/console/login", data={"username": "admin", "password": "violet-harbour-lantern-57"})
        assert signed_in.status_code == 303
    assert booted.restarts()[0] >= 1, "the restart recorded before the reboot is gone"
    status, out = vm.shell("touch /opt/appliance/x; findmnt -no FSTYPE,OPTIONS /")
    assert "Read-only file system" in out and "squashfs" in out and re.search(r"\bro\b", out)
