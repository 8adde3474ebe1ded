"""The router's settings (``appliance cluster``; ``APPLIANCE_CLUSTER_*``): where it listens, how it routes and probes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.settings import BoxSettings

Policy = Literal["cache_aware", "consistent_hash", "power_of_two", "round_robin", "random"]


class ClusterSettings(BoxSettings):
    model_config = SettingsConfigDict(env_prefix="APPLIANCE_CLUSTER_", extra="ignore", populate_by_name=True)

    host: str = Field("127.0.0.1", description="address the router listens on (it serves plain HTTP; see "
                                               "--allow-plain-http)")
    port: int = Field(8440, ge=1, le=65535, description="port the router listens on")
    metrics_port: int = Field(29000, ge=1, le=65535, description="port of the router's own Prometheus metrics "
                                                                 "(on 127.0.0.1)")
    policy: Policy = Field("cache_aware", description="how a request picks a box: cache_aware sends a prompt to the "
                                                      "box that saw its longest prefix (a chat's turns stay together) "
                                                      "and a new one to the least busy box, ties always to the same "
                                                      "box; round_robin spreads one-at-a-time traffic")
    ca: Path | None = Field(None, description="PEM file of the CA that signed the boxes' certificates (the one the "
                                              "admin uploaded on each box's settings page), or the boxes' own "
                                              "self-signed cert.pem files concatenated")
    allow_plain_http: bool = Field(False, description="let the router listen on a LAN address; it speaks plain "
                                                      "HTTP, so API keys cross the LAN unencrypted")
    health_interval: int = Field(2, ge=1, description="seconds between the router's /health probes of each box")
    health_failures: int = Field(2, ge=1, description="failed probes in a row that take a box out of rotation")
    health_successes: int = Field(1, ge=1, description="good probes in a row that bring it back")
    retries: int = Field(5, ge=1, description="tries of one request; backing off from 0.2 s, doubling, they span "
                                               "the seconds a dead box takes to be taken out")
    breaker_failures: int = Field(2, ge=1, description="failed requests in a row that take a box out at once, "
                                                       "before its probes do")
    breaker_seconds: int = Field(10, ge=1, description="seconds such a box stays out before requests may try it "
                                                       "again; the first that succeeds brings it back")
    startup_timeout: int = Field(300, ge=1, description="seconds the router waits at start for a first ready box")

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        """Flags and variables only: a box's console settings (its own host and port) are not the router's."""
        return init_settings, env_settings
