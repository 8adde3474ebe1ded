import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.os_kernel import OsKernel


def test_os_release_kernel_and_uptime_from_an_injected_clock(tmp_path, box_settings):
    (tmp_path / "root/etc").mkdir(parents=True)
    (tmp_path / "root/etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nID=debian\n')
    files = OsKernel(root=tmp_path / "root").collect(Context(box_settings, clock=lambda: 2e9))
    data = json.loads(files["os-kernel.json"])
    assert data["os_release"]["PRETTY_NAME"] == "Debian GNU/Linux 13 (trixie)"
    assert data["kernel"]["release"] and data["uptime_s"] > 0
