"""One typed settings object for the box, loaded once and passed down.

Values come from (highest first) CLI flags, ``APPLIANCE_*`` environment
variables, then the defaults that match the paths in DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", extra="ignore")

    state_dir: Path = Path("/var/lib/appliance")
    store: Path = Path("/opt/appliance/store")
    trusted_key: Path | None = Field(
        default=None,
        description="Vendor public key the box trusts; default: STORE/../vendor.pub, then the store's dev key with a warning",
    )
    host: str = "0.0.0.0"
    port: int = 8443
    tls: Literal["auto", "off"] = "auto"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_queue: int = 64
    prefill_chunk: int = 256
    threads: int | None = None
    log_level: str = "info"

    @property
    def keys_db(self) -> Path:
        return self.state_dir / "keys.sqlite"

    @property
    def health_db(self) -> Path:
        return self.state_dir / "health.sqlite"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    def ensure_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_settings(**overrides: object) -> Settings:
    """Build settings from env and explicit overrides; ``None`` overrides are ignored."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
