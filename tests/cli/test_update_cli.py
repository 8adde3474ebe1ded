"""``appliance update`` on a machine that did not boot the disk image says so in one line, and never writes."""

import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True)


def test_status_and_apply_off_the_box_are_one_line_errors(tmp_path):
    bundle = tmp_path / "update.bundle"
    bundle.write_bytes(b"not a bundle")
    for args in (("update", "status", "--state-dir", str(tmp_path)),
                 ("update", "apply", str(bundle), "--state-dir", str(tmp_path))):
        proc = _run(*args)
        assert proc.returncode == 4, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr
        assert "updates work only on a box booted from its disk image" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["update.bundle"]


def test_a_version_that_is_not_pep440_is_refused_by_build(tmp_path):
    proc = _run("build", "update", "--out", str(tmp_path / "x.bundle"), "--version", "v2 final")
    assert proc.returncode == 2 and "is not a version (PEP 440" in proc.stderr
