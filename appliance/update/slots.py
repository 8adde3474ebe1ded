"""The two root slots as systemd-boot sees them: one boot entry per slot on the ESP, with a try counter while on
trial (the Boot Loader Specification's boot counting).

Entries are named ``appliance-<generation>-<slot>[+LEFT[-DONE]].conf`` and the loader has no ``default``: it sorts
entries with tries left before those without, then by name, newest generation first. So a new slot is tried first,
and once its tries run out the previous slot boots again with nobody choosing it. An installed slot (no counter) is
good; ``+0`` is bad; anything else is on trial.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from appliance.errors import UpdateError

SLOTS = ("a", "b")
TRIES = 3
ENTRIES = "loader/entries"
_ENTRY = re.compile(r"^appliance-(?P<gen>\d+)-(?P<slot>[ab])(?:\+(?P<left>\d+)(?:-(?P<done>\d+))?)?\.conf$")
# quiet boot on the serial console too: the first-boot unit prints the setup code there. panic=10 reboots a kernel
# that panics, so a slot that cannot even mount its root spends its tries and falls back.
CMDLINE = ("root=PARTUUID={root} ro rootfstype=squashfs console=tty0 console=ttyS0,115200 quiet panic=10 "
           "appliance.slot={slot}")


class SlotState(str, Enum):
    EMPTY = "empty"  # no boot entry: never written, or being written
    TRYING = "trying"  # written, on trial: boots first while it has tries left
    GOOD = "good"  # blessed (or installed at the factory)
    BAD = "bad"  # ran out of tries without becoming healthy; the loader skips it


@dataclass(frozen=True)
class Entry:
    path: Path
    generation: int
    slot: str
    tries_left: int | None
    tries_done: int
    version: str  # read when the entry is listed: the ESP is root's alone, and the boot check then drops root

    @property
    def state(self) -> SlotState:
        if self.tries_left is None:
            return SlotState.GOOD
        return SlotState.BAD if self.tries_left == 0 else SlotState.TRYING



def kernel_cmdline(root_partuuid: str, slot: str) -> str:
    return CMDLINE.format(root=root_partuuid, slot=slot)


def entry_name(generation: int, slot: str, tries: int | None) -> str:
    counter = f"+{tries}" if tries is not None else ""
    return f"appliance-{generation:04d}-{slot}{counter}.conf"


def entry_text(slot: str, version: str, root_partuuid: str) -> str:
    return (f"title Appliance {version} (slot {slot.upper()})\nversion {version}\n"
            f"linux /appliance/{slot}/vmlinuz\ninitrd /appliance/{slot}/initrd.img\n"
            f"options {kernel_cmdline(root_partuuid, slot)}\n")


def entries(esp: Path) -> list[Entry]:
    """The appliance's boot entries on the ESP, newest generation first."""
    found = []
    directory = esp / ENTRIES
    for path in directory.iterdir() if directory.is_dir() else ():
        m = _ENTRY.match(path.name)
        if m:
            found.append(Entry(path, int(m["gen"]), m["slot"], int(m["left"]) if m["left"] is not None else None,
                               int(m["done"] or 0), _version(path)))
    return sorted(found, key=lambda e: e.generation, reverse=True)


def _version(path: Path) -> str:
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "version":
            return value.strip()
    return ""


def entry_of(esp: Path, slot: str) -> Entry | None:
    return next((e for e in entries(esp) if e.slot == slot), None)


def booted_slot(cmdline: str) -> str | None:
    m = re.search(r"(?:^|\s)appliance\.slot=([ab])(?:\s|$)", cmdline)
    return m[1] if m else None


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


@dataclass(frozen=True)
class Release:
    """/etc/appliance/release.json of the running root, written by the image build."""

    version: str
    sku: str
    box_name: str


@dataclass(frozen=True)
class Disk:
    """Where this box keeps its slots and boot entries; the tests point it at plain files."""

    esp: Path = Path("/efi")
    by_partlabel: Path = Path("/dev/disk/by-partlabel")
    by_partuuid: Path = Path("/dev/disk/by-partuuid")
    cmdline: Path = Path("/proc/cmdline")
    release_file: Path = Path("/etc/appliance/release.json")

    def device(self, slot: str) -> Path:
        return self.by_partlabel / f"root-{slot}"

    def partuuid(self, slot: str) -> str:
        device = self.device(slot).resolve()
        for link in self.by_partuuid.iterdir() if self.by_partuuid.is_dir() else ():
            if link.resolve() == device:
                return link.name
        raise UpdateError(f"{self.by_partuuid}: no partition UUID for {self.device(slot)}; is this the box's disk?")

    def booted(self) -> str:
        slot = booted_slot(self.cmdline.read_text())
        if slot is None:
            raise UpdateError(f"{self.cmdline}: no appliance.slot= on the kernel command line; updates work only on "
                              "a box booted from its disk image")
        return slot

    def release(self) -> Release:
        try:
            data = json.loads(self.release_file.read_text())
            return Release(version=data["version"], sku=data["sku"], box_name=data["box_name"])
        except (OSError, ValueError, KeyError) as exc:
            raise UpdateError(f"{self.release_file}: cannot tell which version runs ({exc}); updates work only on a "
                              "box booted from its disk image") from None

    def size(self, slot: str) -> int:
        fd = os.open(self.device(slot), os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
