"""Typed settings, declared once: what every box process reads, and what the server adds.

Values come from (highest first) CLI flags, ``APPLIANCE_*`` environment
variables, the admin's settings from the console (``STATE/settings.json``,
the previous version kept beside it for revert), then the defaults that
match the paths in DESIGN.md. The CLI builds its options from these fields
(``appliance.cli.options``), so a setting is declared here and nowhere else.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, create_model
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from appliance.errors import ApplianceError


_ORIGIN = re.compile(r"^https?://[^/\s?#]+$")


def _origins(origins: list[str]) -> list[str]:
    origins = [o.strip().rstrip("/") for o in origins if o.strip()]
    bad = [o for o in origins if o != "*" and not _ORIGIN.match(o)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an origin; write scheme://host[:port], e.g. "
                         "http://192.168.1.20:3000, or * for any")
    return origins


def is_loopback(host: str) -> bool:
    """localhost or a loopback address: where plain HTTP never crosses the LAN."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _vendor_url(url: str | None, info: ValidationInfo) -> str | None:
    """Only https leaves the box (plain http only to loopback, for a local relay or a test); on needs a URL."""
    url = (url or "").strip() or None
    if url is None:
        if info.data.get("phone_home"):
            raise ValueError("phone-home is on but no vendor URL is set")
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the vendor URL must look like https://vendor.example/phone-home")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("the vendor URL must use https (plain http only to a loopback address)")
    if parts.username or parts.password:
        raise ValueError("the vendor URL must not carry a user name or password")
    return url


class BoxSettings(BaseSettings):
    """Shared by the server, the monitor and the CLI: where state and the store live, which key to trust.

    Their environment names are fixed (``APPLIANCE_STATE_DIR`` ...), whatever
    prefix a subclass gives its own fields.
    """

    model_config = SettingsConfigDict(env_prefix="APPLIANCE_", extra="ignore", populate_by_name=True)
    _pinned: frozenset[str] = PrivateAttr(default_factory=frozenset)

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
    vendor_key: Path = Field(Path("/etc/appliance/vendor-diagnostics.pub"), validation_alias="APPLIANCE_VENDOR_KEY",
                             description="vendor's age public key that diagnostic bundles are encrypted to "
                                         "(default: /etc/appliance/vendor-diagnostics.pub, installed in the image)")
    phone_home: bool = Field(False, validation_alias="APPLIANCE_PHONE_HOME",
                             description="send a redacted health summary to the vendor on a schedule (default: off)")
    phone_home_url: Annotated[str | None, AfterValidator(_vendor_url)] = Field(
        None, validation_alias="APPLIANCE_PHONE_HOME_URL", validate_default=True,
        description="where the summary is POSTed as JSON (https; plain http only to loopback)")
    phone_home_minutes: int = Field(60, ge=1, le=7 * 24 * 60, validation_alias="APPLIANCE_PHONE_HOME_MINUTES",
                                    description="minutes between two summaries")

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

    @property
    def console_db(self) -> Path:
        """Admin accounts, the one-time setup code and console sessions."""
        return self.state_dir / "console.sqlite"

    @property
    def session_secret_file(self) -> Path:
        return self.state_dir / "session.secret"

    @property
    def timeseries_db(self) -> Path:
        return self.state_dir / "timeseries.sqlite"

    @property
    def diagnostics_dir(self) -> Path:
        """Bundles awaiting review or released, and their redaction maps; never leaves the box unencrypted."""
        return self.state_dir / "diagnostics"

    @property
    def support_db(self) -> Path:
        """Support windows (token hashes) and the audit log of every vendor call."""
        return self.state_dir / "support.sqlite"

    @property
    def phone_home_file(self) -> Path:
        """The last phone-home attempt's outcome, written by the monitor, shown by the console and the CLI."""
        return self.state_dir / "phone-home.json"

    @property
    def box_id_file(self) -> Path:
        """A random id that tells the vendor's summaries from one box apart, and nothing else about it."""
        return self.state_dir / "box-id"

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple:
        return init_settings, env_settings, AdminSettingsFile(settings_cls, init_settings)

    def ensure_state_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    @property
    def pinned(self) -> frozenset[str]:
        """Settings given as flags or APPLIANCE_* variables: they win over the admin's, so the console shows them fixed."""
        return self._pinned


class Settings(BoxSettings):
    """The serving daemon's settings (``appliance serve`` and ``appliance up``)."""

    box_name: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                                 description="name shown in the console (default: the store's box name)")
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

    def local_url(self) -> str:
        """Where processes on the box itself reach the server."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{'http' if self.tls == 'off' else 'https'}://{host}:{self.port}"
    image_concurrency: int = Field(1, ge=1, description="images generated at once, box-wide; more wait in the "
                                   "image queue (up to max_queue per model), never in chat's")
    image_threads: int | None = Field(None, ge=1, description="threads per image generation (default: half the "
                                      "physical cores, so chat keeps the rest)")
    cors_origins: Annotated[list[str], AfterValidator(_origins)] = Field(
        default_factory=list, description="browser origins (scheme://host[:port]) allowed to call the API "
        "cross-origin; default none, so only the console's own origin (same-origin) can")


ADMIN_FILE = "settings.json"
PREVIOUS_ADMIN_FILE = "settings.previous.json"
ADMIN_FIELDS = ("box_name", "log_level", "host", "port", "tls_cert", "tls_key", "cors_origins",  # the console's to change
                "phone_home", "phone_home_url", "phone_home_minutes")
PHONE_HOME_FIELDS = ("phone_home", "phone_home_url", "phone_home_minutes")


def _state_dir_of(init: dict[str, Any]) -> Path:
    given = init.get("state_dir") or init.get("APPLIANCE_STATE_DIR") or os.environ.get("APPLIANCE_STATE_DIR")
    return Path(given) if given else BoxSettings.model_fields["state_dir"].default


class AdminSettingsFile(PydanticBaseSettingsSource):
    """The admin's choices from the console, over the factory defaults and under env and flags."""

    def __init__(self, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.path = _state_dir_of(init_settings()) / ADMIN_FILE

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ApplianceError(f"cannot read the admin settings {self.path}: {exc}; fix or delete the file "
                                 "(the console writes it)") from None
        return {k: v for k, v in data.items() if k in ADMIN_FIELDS and k in self.settings_cls.model_fields}


def validate_admin_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The admin's settings, typed and checked field by field like the flags; empty or None means "default"."""
    given = {k: v for k, v in values.items() if k in ADMIN_FIELDS and v not in (None, "")}
    try:
        checked = _AdminSettings(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        why = err["msg"].removeprefix("Value error, ")
        raise ApplianceError(f"{name.replace('_', ' ')} {err.get('input')!r} is not valid: {why}") from None
    return checked.model_dump(mode="json", exclude_none=True, include=set(given))


def read_admin_settings(state_dir: Path, previous: bool = False) -> dict[str, Any]:
    path = state_dir / (PREVIOUS_ADMIN_FILE if previous else ADMIN_FILE)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def write_admin_settings(state_dir: Path, values: dict[str, Any]) -> None:
    """Save the admin's settings (validated by the caller); the version they replace is kept for revert."""
    current, previous = state_dir / ADMIN_FILE, state_dir / PREVIOUS_ADMIN_FILE
    tmp = current.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: v for k, v in values.items() if k in ADMIN_FIELDS}, indent=2, default=str))
    if current.exists():
        os.replace(current, previous)
    else:
        previous.write_text("{}")
    os.replace(tmp, current)


_AdminSettings = create_model("_AdminSettings", __config__=ConfigDict(extra="forbid", populate_by_name=True),
                              **{k: (Settings.model_fields[k].annotation, Settings.model_fields[k]) for k in ADMIN_FIELDS})

S = TypeVar("S", bound=BoxSettings)


def load_settings(cls: type[S] = Settings, **overrides: object) -> S:  # type: ignore[assignment]
    """Settings from the environment and explicit overrides (``None`` means not given); one-line errors."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = cls(**given)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err.get("loc") else "?"
        flag = "--" + name.replace("_", "-")
        why = err["msg"].removeprefix("Value error, ")
        raise ApplianceError(f"invalid setting {flag} ({name}) = {err.get('input')!r}: {why}; "
                             f"fix the flag, the APPLIANCE_{name.upper()} environment variable or the admin's "
                             f"settings.json in the state directory") from None
    settings._pinned = frozenset(given) | {k for k in cls.model_fields if f"APPLIANCE_{k.upper()}" in os.environ}
    return settings
