"""Typed settings, declared once: what every box process reads, and what the server adds.

Values come from (highest first) CLI flags, ``APPLIANCE_*`` environment
variables, then the defaults that match the paths in DESIGN.md. The CLI
builds its options from these fields (``appliance.cli.options``), so a
setting is declared here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from appliance.errors import ApplianceError


class BoxSettings(BaseSettings):
    """Shared by the server, the monitor and the CLI: where state and the store live, which key to trust.

    Their environment names are fixed (``APPLIANCE_STATE_DIR`` ...), whatever
    prefix a subclass gives its own fields.
    """

    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", extra="ignore", populate_by_name=True)

    state_dir: Path = Field(Path("/var/lib/appliance"), validation_alias="APPLIANCE_STATE_DIR",
                            description="state directory: keys, health history, TLS, settings")
    store: Path = Field(Path("/opt/appliance/store"), validation_alias="APPLIANCE_STORE",
                        description="model store")
    trusted_key: Path | None = Field(
        None, validation_alias="APPLIANCE_TRUSTED_KEY",
        description="vendor public key the box trusts (default: /etc/appliance/vendor.pub, then the store's "
                    "development key with a warning)")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="APPLIANCE_LOG_LEVEL", description="log level")

    @property
    def keys_db(self) -> Path:
        return self.state_dir / "keys.sqlite"

    @property
    def health_db(self) -> Path:
        return self.state_dir / "health.sqlite"

    @property
    def tls_dir(self) -> Path:
        return self.state_dir / "tls"

    @property
    def monitor_key_file(self) -> Path:
        """The monitor's API key, provisioned by ``appliance firstboot``."""
        return self.state_dir / "monitor.key"

    @property
    def server_pid_file(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def firstboot_marker(self) -> Path:
        return self.state_dir / ".firstboot-done"

    def ensure_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


class Settings(BoxSettings):
    """The serving daemon's settings (``appliance serve`` and ``appliance up``)."""

    host: str = Field("0.0.0.0", description="address to bind")
    port: int = Field(8443, ge=1, le=65535, description="port")
    tls: Literal["auto", "off"] = Field(
        "auto", description="'auto' (the installed certificate, else a per-box self-signed one) or 'off'")
    tls_cert: Path | None = Field(None, description="installed certificate (PEM)")
    tls_key: Path | None = Field(None, description="installed certificate's private key (PEM)")
    max_queue: int = Field(64, ge=0, description="requests that may wait per model before 429")
    prefill_chunk: int | None = Field(
        None, ge=2, description="prompt tokens prefilled per step (default: the SKU's value in the manifest)")
    threads: int | None = Field(None, ge=1, description="engine threads (default: one per physical core)")


S = TypeVar("S", bound=BoxSettings)


def load_settings(cls: type[S] = Settings, **overrides: object) -> S:  # type: ignore[assignment]
    """Settings from the environment and explicit overrides (``None`` means not given); one-line errors."""
    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        flag = "--" + name.replace("_", "-")
        raise ApplianceError(f"invalid setting {flag} ({name}) = {err.get('input')!r}: {err['msg']}; "
                             f"fix the flag or the APPLIANCE_{name.upper()} environment variable") from None
