"""Hold the box's systemd units to their hardening.

- `systemd-analyze security --offline=true` exposure per unit stays under a
  ceiling (server: 2.0 is the requirement; measured 1.1 with systemd 252).
- `systemd-analyze verify` passes with no warning about our units. It runs
  against a throw-away root (tmp_path) holding the host's stock units, our
  units in etc/systemd/system and a stub /opt/appliance/venv/bin/appliance,
  so it does not complain that the real executable is missing.
- The directives the design relies on are present.
- Every Exec*= line names a sub-command and options the `appliance` CLI has.

The first two need `systemd-analyze` >= 250 (for --offline); on
Debian/Ubuntu it is in the `systemd` package. They are skipped with a reason
when it is missing or too old; the others need only the unit files.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT_DIR = REPO / "image-build" / "systemd"
POLKIT_RULE = REPO / "image-build" / "polkit" / "50-appliance-health.rules"

SERVER = "appliance-server.service"
HEALTH = "appliance-health.service"
FIRSTBOOT = "appliance-firstboot.service"
BOOT_CHECK = "appliance-boot-check.service"
UPDATE = "appliance-update.service"
UPDATE_PATH = "appliance-update.path"
UNITS = (SERVER, HEALTH, FIRSTBOOT)  # run as the service user from the start
ALL_UNITS = (*UNITS, BOOT_CHECK, UPDATE)

# Ceilings on "Overall exposure level" (0.0 best .. 10.0 worst). Measured with
# systemd 252: server 1.1, health 1.4, firstboot 0.2. The server ceiling is
# the requirement; the others are the measurement plus a small margin (update: 2.3).
MAX_EXPOSURE = {SERVER: 2.0, HEALTH: 1.6, FIRSTBOOT: 0.5, BOOT_CHECK: 2.4, UPDATE: 2.5}

# Hardening every unit must carry (directive -> exact value).
COMMON_HARDENING = {
    "User": "appliance",
    "Group": "appliance",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "StateDirectory": "appliance",
    "StateDirectoryMode": "0700",
    "UMask": "0077",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallArchitectures": "native",
    "KeyringMode": "private",
    "RemoveIPC": "yes",
    "Environment": "APPLIANCE_STATE_DIR=/var/lib/appliance",
}

SPECIFIC = {
    SERVER: {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "TimeoutStartSec": "600",
        "ProtectProc": "invisible",
        "ProcSubset": "all",
        "PrivateUsers": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "ExecStart": "/opt/appliance/venv/bin/appliance serve --store /opt/appliance/store"
        " --state-dir /var/lib/appliance",
    },
    HEALTH: {
        "Restart": "always",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "ExecStart": "/opt/appliance/venv/bin/appliance health run --state-dir /var/lib/appliance",
    },
    FIRSTBOOT: {
        "Type": "oneshot",
        "ConditionPathExists": "!/var/lib/appliance/.firstboot-done",
        "PrivateNetwork": "yes",
        "ExecStart": "/opt/appliance/venv/bin/appliance firstboot --state-dir /var/lib/appliance",
    },
}

SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


def _systemd_version() -> int | None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.match(r"systemd (\d+)", out)
    return int(m.group(1)) if m else None


_VERSION = _systemd_version()
_NO_ANALYZE = (
    "systemd-analyze not installed (apt-get install systemd)" if _VERSION is None
    else f"systemd-analyze {_VERSION} lacks 'security --offline' (needs >= 250)" if _VERSION < 250
    else ""
)
needs_analyze = pytest.mark.skipif(bool(_NO_ANALYZE), reason=_NO_ANALYZE or "systemd-analyze >= 250")


def _directives(unit: str) -> dict[str, list[str]]:
    """Every Key=value of a unit file, values in file order (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for raw in (UNIT_DIR / unit).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def _exposure(unit: str) -> tuple[float, str]:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT_DIR / unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    m = re.search(rf"Overall exposure level for {re.escape(unit)}:\s*(\d+(?:\.\d+)?)", output)
    assert m, f"no exposure line in:\n{output}"
    return float(m.group(1)), output


@pytest.fixture(scope="module")
def offline_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root with the stock units, ours, and a stub appliance executable."""
    root = tmp_path_factory.mktemp("root")
    stock = next((d for d in SYSTEM_UNIT_DIRS if (d / "sysinit.target").exists()), None)
    if stock is None:
        pytest.skip("no stock systemd unit directory (sysinit.target) on this host")
    shutil.copytree(stock, root / "usr/lib/systemd/system", symlinks=True)
    exe = root / "opt/appliance/venv/bin/appliance"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    etc = root / "etc/systemd/system"
    etc.mkdir(parents=True)
    for unit in (*ALL_UNITS, UPDATE_PATH):
        shutil.copy2(UNIT_DIR / unit, etc / unit)
    return root


@pytest.mark.parametrize("unit", ALL_UNITS)
@needs_analyze
def test_exposure_under_ceiling(unit: str) -> None:
    level, output = _exposure(unit)
    assert level <= MAX_EXPOSURE[unit], f"{unit}: exposure {level} > {MAX_EXPOSURE[unit]}\n{output}"


@pytest.mark.parametrize("unit", ALL_UNITS)
@needs_analyze
def test_verify_clean(unit: str, offline_root: Path) -> None:
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={offline_root}", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    about_us = [line for line in output.splitlines() if "appliance" in line]
    assert not about_us, "\n".join(about_us)


@pytest.mark.parametrize("unit", UNITS)
def test_key_directives(unit: str) -> None:
    found = _directives(unit)
    expected = {**COMMON_HARDENING, **SPECIFIC[unit]}
    for key, value in expected.items():
        assert key in found, f"{unit}: {key}= missing"
        assert value in found[key], f"{unit}: {key}={found[key]!r}, want {value!r}"
    # The seccomp filter: the service set, minus privileged and resource calls.
    assert "@system-service" in found["SystemCallFilter"]
    assert "~@privileged @resources" in found["SystemCallFilter"]
    # No capability is granted anywhere; nothing binds a privileged port.
    assert not any("CAP_" in v for k in ("CapabilityBoundingSet", "AmbientCapabilities") for v in found[k])


def test_server_serves_the_lan() -> None:
    """No IP deny list on the server: LAN clients on any address must reach it."""
    found = _directives(SERVER)
    assert "IPAddressDeny" not in found
    assert "PrivateNetwork" not in found


def test_polkit_rule_scopes_health_to_server() -> None:
    rule = POLKIT_RULE.read_text()
    assert "org.freedesktop.systemd1.manage-units" in rule
    assert '"appliance-server.service"' in rule
    assert 'subject.user !== "appliance"' in rule
    verbs = set(re.findall(r'verb === "([a-z-]+)"', rule))
    assert verbs == {"start", "restart", "try-restart", "reset-failed"}


EXEC_KEYS = ("ExecStartPre", "ExecStart", "ExecStartPost", "ExecReload", "ExecStop", "ExecStopPost")


def _appliance_command_lines(unit: str) -> list[list[str]]:
    """argv of each Exec*= line that runs the appliance CLI, without systemd's prefixes (-, @, +, !, :)."""
    lines = []
    for key in EXEC_KEYS:
        for value in _directives(unit).get(key, []):
            argv = shlex.split(value)
            argv[0] = argv[0].lstrip("-@+!:")
            if Path(argv[0]).name == "appliance":
                lines.append(argv)
    return lines


def _cli_faults(argv: list[str]) -> list[str]:
    """What in ``argv`` the `appliance` CLI would refuse: unknown sub-commands or options, missing values.

    Walks the click command tree typer builds. Duck-typed (``commands``,
    ``param_type_name``) because newer typer vendors its own click.
    """
    import typer

    from appliance.cli.main import app

    cmd = typer.main.get_command(app)
    path = ["appliance"]
    given: set[str] = set()
    positional = 0
    faults: list[str] = []
    args = iter(argv[1:])
    for tok in args:
        where = " ".join(path)
        options = [p for p in cmd.params if p.param_type_name == "option"]
        if tok.startswith("-"):
            name, eq, _ = tok.partition("=")
            opt = next((p for p in options if name in p.opts + p.secondary_opts), None)
            if opt is None:
                known = sorted(o for p in options for o in p.opts + p.secondary_opts)
                faults.append(f"`{where}` has no option {name} (it has {', '.join(known) or 'none'})")
                continue
            given.add(opt.name)
            if not (opt.is_flag or opt.count or eq) and next(args, None) is None:
                faults.append(f"`{where} {name}` needs a value")
        elif hasattr(cmd, "commands") and not positional:
            sub = cmd.commands.get(tok)
            if sub is None:
                faults.append(f"`{where}` has no sub-command {tok!r} (it has {', '.join(sorted(cmd.commands))})")
                return faults
            cmd = sub
            path.append(tok)
        else:
            positional += 1
    where = " ".join(path)
    if hasattr(cmd, "commands") and not cmd.invoke_without_command:
        faults.append(f"`{where}` is a group, not a command: it only prints its help")
    arguments = [p for p in cmd.params if p.param_type_name == "argument"]
    if all(a.nargs != -1 for a in arguments) and positional > sum(a.nargs for a in arguments):
        faults.append(f"`{where}` takes {sum(a.nargs for a in arguments)} arguments, the unit passes {positional}")
    if positional < sum(1 for a in arguments if a.required):
        faults.append(f"`{where}` needs its arguments {[a.name for a in arguments]}")
    for p in cmd.params:
        if p.param_type_name == "option" and p.required and p.name not in given:
            faults.append(f"`{where}` needs {p.opts[0]}")
    return faults


@pytest.mark.parametrize("unit", ALL_UNITS)
def test_exec_lines_name_real_cli_commands(unit: str) -> None:
    """A unit that runs a sub-command or option the CLI lacks would fail only on the box, at boot."""
    lines = _appliance_command_lines(unit)
    assert lines, f"{unit}: no Exec*= line runs the appliance CLI"
    for argv in lines:
        faults = _cli_faults(argv)
        assert not faults, f"{unit}: {shlex.join(argv)}: " + "; ".join(faults)


def test_boot_check_gates_blessing_and_reboots_a_failed_trial() -> None:
    """A slot on trial is blessed only through this unit, and a failed check spends a try by rebooting."""
    found = _directives(BOOT_CHECK)
    assert found["RequiredBy"] == ["boot-complete.target"] and found["Before"] == ["boot-complete.target"]
    assert found["FailureAction"] == ["reboot"] and found["Type"] == ["oneshot"]
    # Root only to read the ESP and the state, then it drops to the state's owner: no capability beyond that.
    assert found["CapabilityBoundingSet"] == ["CAP_SETUID CAP_SETGID CAP_DAC_READ_SEARCH"]
    assert found["NoNewPrivileges"] == ["yes"] and found["RequiresMountsFor"] == ["/efi"]
    assert found["ProtectSystem"] == ["strict"] and found["ReadWritePaths"] == ["/var/lib/appliance"]


def test_cli_check_catches_what_it_should() -> None:
    """The checker itself: a wrong sub-command, option, missing value or bare group is reported."""
    exe = "/opt/appliance/venv/bin/appliance"
    assert _cli_faults([exe, "health", "run", "--state-dir", "/x"]) == []
    assert _cli_faults([exe, "health", "--state-dir=/x", "run", "--supervised"]) == []
    assert "no sub-command 'nope'" in _cli_faults([exe, "health", "nope"])[0]
    assert "no option --stat-dir" in _cli_faults([exe, "serve", "--stat-dir", "/x"])[0]
    assert "needs a value" in _cli_faults([exe, "serve", "--store"])[0]
    assert "is a group" in _cli_faults([exe, "keys"])[0]
    assert "needs its arguments" in _cli_faults([exe, "store", "verify"])[0]
    assert "takes 1 arguments" in _cli_faults([exe, "store", "verify", "/a", "/b"])[0]


def test_console_updates_reach_root_only_through_the_path_unit() -> None:
    """The unprivileged server leaves a checked bundle and a request; only this pair of units applies it as root,
    with no network and no capability beyond reaching the state directory."""
    path = _directives(UPDATE_PATH)
    assert path["PathExists"] == ["/var/lib/appliance/updates/request.json"] and path["Unit"] == [UPDATE]
    assert path["WantedBy"] == ["multi-user.target"]
    found = _directives(UPDATE)
    assert "WantedBy" not in found and found["Type"] == ["oneshot"]
    assert found["CapabilityBoundingSet"] == ["CAP_DAC_OVERRIDE CAP_CHOWN"]
    assert found["IPAddressDeny"] == ["any"] and found["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert found["ReadWritePaths"] == ["/var/lib/appliance /efi"] and found["DevicePolicy"] == ["closed"]
    assert "--state-dir /var/lib/appliance" in found["ExecStart"][0]


def test_path_unit_verifies_clean(offline_root: Path) -> None:
    if _NO_ANALYZE:
        pytest.skip(_NO_ANALYZE)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", f"--root={offline_root}", UPDATE_PATH],
                          capture_output=True, text=True, check=False)
    about_us = [line for line in (proc.stdout + proc.stderr).splitlines() if "appliance" in line]
    assert proc.returncode == 0 and not about_us, proc.stdout + proc.stderr
