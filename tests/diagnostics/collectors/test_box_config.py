import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.box_config import BoxConfig
from appliance.settings import write_admin_settings


def test_settings_and_state_files_without_their_contents(box_settings):
    box_settings.ensure_state_dir()
    box_settings.session_secret_file.write_text("f" * 64)
    write_admin_settings(box_settings.state_dir, {"log_level": "debug"})
    files = BoxConfig().collect(Context(box_settings, clock=lambda: 0.0))
    cfg = json.loads(files["settings.json"])
    assert cfg["effective"]["port"] == 8443 and cfg["admin_overlay"]["settings.json"] == {"log_level": "debug"}
    state = {f["path"]: f for f in json.loads(files["state-files.json"])}
    assert state["session.secret"]["copied"] == "no (a secret)"
    assert "f" * 64 not in "".join(files.values())
