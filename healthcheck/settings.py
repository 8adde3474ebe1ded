"""The monitor's settings: the box's shared ones plus periods, timeouts and thresholds (``APPLIANCE_HEALTH_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from appliance.settings import BoxSettings


class HealthSettings(BoxSettings):
    model_config = SettingsConfigDict(env_prefix="APPLIANCE_HEALTH_", extra="ignore", populate_by_name=True)

    server: str | None = Field(None, description="server base URL the monitor probes (default: where the box's "
                                                 "settings, the admin's included, say it listens)")
    supervised: bool = Field(False, description="restart through `appliance up`, not systemd")
    server_unit: str = "appliance-server.service"

    liveness_period: float = 5.0
    liveness_timeout: float = 2.0
    readiness_period: float = 10.0
    readiness_timeout: float = 5.0
    golden_period: float = 300.0
    golden_timeout: float = 60.0
    metrics_period: float = 15.0
    system_period: float = 30.0
    disk_period: float = 60.0
    integrity_period: float = 60.0  # one file re-hashed per run, round robin
    clock_period: float = 300.0
    retry_period: float = 10.0  # re-run a check that is not ok this soon, whatever its period

    failures_before_restart: int = 2
    max_restarts: int = 3
    restart_window: float = 600.0
    restart_grace: float = 60.0  # after a restart, give the server this long to come back

    disk_degraded_free_ratio: float = 0.10
    disk_failed_free_ratio: float = 0.02
    disk_degraded_free_bytes: int = 512 * 2**20
    disk_failed_free_bytes: int = 64 * 2**20
    memory_degraded_ratio: float = 0.90
    ttft_degraded_factor: float = 5.0
    history_rows: int = 10000
