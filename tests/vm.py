"""A qemu VM booted from a built image, with its serial console logged to a file and, on test images, a root shell.

Two ways to boot the same disk:
- `uefi`: OVMF under TCG; the disk boots by itself through systemd-boot. TCG has AVX2 (when asked for) and no AVX-512. The tests
  use this: on these machines /dev/kvm is a nested PVM hypervisor (kvm_pvm), which runs only kernels built as PVM
  guests; a stock Debian kernel stops in its decompressor, or at a `lock cmpxchg16b` with "KVM internal error",
  and OVMF at its first FPU instruction.
- `kvm`: for hosts with real KVM (bench/boot.py --kvm): the image's kernel and initrd given to qemu directly, with
  the boot entry's command line, and the host CPU (AVX-512 where the host has it).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.sku.profiles import load_profile
from wait import wait_until

# The AVX2 SKU's CPU under TCG: the same model its store's golden tokens were computed on (qemu-user, in the factory).
# qemu 7.2's TCG emulates AVX2 and FMA, but its "max" model does not turn them on by itself.
TCG_CPU = load_profile("cpu-x86_64-avx2").emulation.qemu_cpu
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Vm:
    image_dir: Path
    work: Path
    mode: str = "uefi"  # "uefi" (OVMF, TCG) or "kvm" (direct kernel boot)
    memory_mb: int = 3072
    port: int = field(default_factory=free_port)
    drives: dict[str, Path] = field(default_factory=dict)  # read-only extra disks: /dev/disk/by-id/virtio-NAME
    disk_bytes: int | None = None  # a disk bigger than the image, as on a real box: the data partition grows
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    _serial: socket.socket | None = None
    _commands: int = 0

    @property
    def serial_log(self) -> Path:
        return self.work / f"serial-{self.mode}.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """A copy-on-write overlay over the built image, so every test run starts from the image as shipped."""
        self.work.mkdir(parents=True, exist_ok=True)
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(self.image_dir / "appliance.raw"), str(self.work / "disk.qcow2"),
                        *([str(self.disk_bytes)] if self.disk_bytes else [])], check=True)
        if self.mode == "uefi":
            (self.work / "vars.fd").write_bytes(OVMF_VARS.read_bytes())

    def command(self) -> list[str]:
        report = json.loads((self.image_dir / "report.json").read_text())
        serial = self.work / "serial.sock"
        cmd = ["qemu-system-x86_64", "-m", str(self.memory_mb), "-smp", "2", "-nographic", "-nodefaults",
               "-drive", f"file={self.work / 'disk.qcow2'},if=none,id=disk0,format=qcow2",
               "-device", "virtio-blk-pci,drive=disk0,bootindex=0",
               "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{self.port}-:8443",
               "-chardev", f"socket,id=ser0,path={serial},server=on,wait=off,logfile={self.serial_log},logappend=on",
               "-serial", "chardev:ser0", "-rtc", "base=utc"]
        for i, (name, path) in enumerate(self.drives.items()):
            cmd += ["-drive", f"if=none,id=extra{i},file={path},format=raw,readonly=on",
                    "-device", f"virtio-blk-pci,drive=extra{i},serial={name}"]
        if self.mode == "kvm":
            cmd += ["-enable-kvm", "-cpu", "host", "-kernel", str(self.image_dir / "vmlinuz"),
                    "-initrd", str(self.image_dir / "initrd.img"), "-append", report["kernel_cmdline"]]
        else:
            cmd += ["-machine", "q35,accel=tcg", "-cpu", TCG_CPU,
                    "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                    "-drive", f"if=pflash,format=raw,unit=1,file={self.work / 'vars.fd'}"]
        return cmd

    def start(self) -> "Vm":
        if not (self.work / "disk.qcow2").exists():
            self.prepare()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.work / f"qemu-{self.mode}.err", "ab"))
        wait_until(lambda: (self.work / "serial.sock").exists() or self.proc.poll() is not None, timeout=30,
                   what="qemu's serial socket")
        assert self.proc.poll() is None, (self.work / f"qemu-{self.mode}.err").read_text()
        self._serial = socket.socket(socket.AF_UNIX)
        self._serial.connect(str(self.work / "serial.sock"))
        # qemu stops the guest's serial output while the socket's reader falls behind; the log file keeps it all.
        threading.Thread(target=self._drain, args=(self._serial,), daemon=True).start()
        return self

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def console_text(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def wait_console(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """Wait for a regex on the serial console (from offset `since`); the match names what was printed."""
        def seen() -> re.Match | None:
            assert self.proc is not None and self.proc.poll() is None, "the VM exited:\n" + self.console_text()[-3000:]
            return re.search(pattern, self.console_text()[since:], re.S)

        return wait_until(seen, timeout=timeout, interval=0.2, what=f"{pattern!r} on the VM's serial console",
                          details=lambda: self.console_text()[-2000:])

    def shell(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run a command in the serial root shell (test images only); returns (exit status, output)."""
        assert self._serial is not None
        self._commands += 1
        n = self._commands
        start = len(self.console_text())
        line = f"echo __B{n}__; {command} 2>&1; echo __E{n}__ $?\n"
        self._serial.sendall(line.encode())
        m = self.wait_console(rf"__B{n}__\r?\n(.*?)__E{n}__ (\d+)", timeout, since=start)
        return int(m.group(2)), m.group(1).replace("\r", "")

    def login_shell(self, timeout: float = 120, since: int = 0) -> None:
        """The test image logs root in on ttyS0 by itself; make the shell quiet and line-oriented. After a reboot,
        pass where the console stood before it (`since`), or the last boot's prompt would do."""
        self.wait_console(r"root@appliance", timeout, since=since)
        self._serial.sendall(b"stty -echo; export TERM=dumb PS1='# '; dmesg -n 1\n")
        self.shell("true")

    def stop(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        (self.work / "serial.sock").unlink(missing_ok=True)
