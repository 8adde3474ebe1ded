import json

from appliance.diagnostics.collectors.base import Context
from appliance.diagnostics.collectors.health_record import HealthRecord
from appliance.health.history import History
from appliance.health.status import Result


def test_state_history_and_restarts(box_settings):
    h = History(box_settings.health_db)
    h.record("disk", Result.degraded("disk 91% full"))
    h.restart("server", "the server was killed by signal 9 (SIGKILL); the supervisor restarts it")
    h.close()
    files = HealthRecord().collect(Context(box_settings, clock=lambda: 0.0))
    assert json.loads(files["health.json"])["checks"][0]["reason"] == "disk 91% full"
    assert "SIGKILL" in json.loads(files["restarts.json"])[0]["reason"]
    assert len(json.loads(files["history.json"])) == 2


def test_a_box_whose_monitor_never_ran(box_settings):
    files = HealthRecord().collect(Context(box_settings, clock=lambda: 0.0))
    assert json.loads(files["health.json"])["box"]["status"] == "unknown"
