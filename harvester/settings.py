"""Frozen settings read once from TOML and HARVESTER_* environment variables.

Precedence: built-in defaults < config file < `HARVESTER_<SECTION>__<KEY>`
< `HARVESTER_DATABASE_URL`.
Only the CLI calls `load_settings`; everything else receives the frozen `Settings`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from harvester.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/harvester.toml")
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///harvester.db"
ENV_PREFIX = "HARVESTER_"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration_s(value: object) -> float:
    """Seconds from a duration like "90s", "5m", "1h30m", "2d" or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or text like '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if not parts or _DURATION_PART.sub("", text).strip():
                raise ValueError(
                    f"{value!r} is not a duration; use a number with s, m, h or d, like '5m'"
                ) from None
            seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    else:
        raise ValueError("a duration must be a number of seconds or text like '5m'")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


DurationS = Annotated[float, BeforeValidator(parse_duration_s)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def normalize_database_url(value: str) -> str:
    """Accept the common spellings of a URL and return one with an async driver."""
    try:
        url = make_url(value)
    except ArgumentError:
        raise ValueError(
            "not a database URL; expected e.g. postgresql+asyncpg://user@host/db "
            "or sqlite+aiosqlite:///path/to/file.db"
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql" or url.drivername == "postgres":
        url = url.set(drivername="postgresql+asyncpg")
        if not url.database:
            raise ValueError("a PostgreSQL URL must name the database, e.g. .../harvester")
    elif backend == "sqlite":
        url = url.set(drivername="sqlite+aiosqlite")
    else:
        raise ValueError(f"unsupported database {backend!r}; use PostgreSQL or SQLite")
    return url.render_as_string(hide_password=False)


def mask_database_url(value: str) -> str:
    """The URL with its password replaced by ***, fit for logs and messages."""
    try:
        url: URL = make_url(value)
    except ArgumentError:
        return "<unparseable database URL>"
    return url.render_as_string(hide_password=True)


class DatabaseSettings(_Section):
    url: str = DEFAULT_DATABASE_URL
    pool_size: int = Field(default=5, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        return normalize_database_url(value)

    def __repr__(self) -> str:
        return f"DatabaseSettings(url={mask_database_url(self.url)!r}, pool_size={self.pool_size})"

    __str__ = __repr__

    @property
    def dialect(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.url.startswith("sqlite") else "postgresql"


class ApiSettings(_Section):
    endpoint: str | None = None
    page_size: int = Field(default=100, ge=1, le=100)
    connect_timeout: DurationS = Field(default=5.0, gt=0)
    read_timeout: DurationS = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=50)
    retry_budget: DurationS = Field(default=120.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    requests_per_second: float = Field(default=20.0, gt=0)
    ca_bundle: Path | None = None
    vpc: bool = False

    @field_validator("endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{value!r} is not an endpoint URL; include the scheme, "
                "e.g. https://emr-serverless-spark.cn-hangzhou.aliyuncs.com"
            )
        if parts.query or parts.fragment:
            raise ValueError("the endpoint URL must not carry a query or fragment")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError(f"{value!r} has an invalid port") from None
        return value.strip().rstrip("/")


class HarvestSettings(_Section):
    max_parallel_targets: int = Field(default=4, ge=1, le=64)


def check_crontab(value: str | None) -> str | None:
    """A crontab line (five fields, UTC) or None for an empty value; ValueError otherwise."""
    if value is None or not value.strip():
        return None
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a crontab expression: {exc}") from None
    return value.strip()


class ScheduleSettings(_Section):
    """When the daemon harvests: an interval or a cron expression, with random jitter."""

    interval: DurationS = Field(default=300.0, gt=0)
    cron: str | None = None
    jitter: DurationS = Field(default=30.0, ge=0)
    discovery_interval: DurationS = Field(default=3600.0, gt=0)
    #: time between full passes of a gateway; the runs between them are incremental
    full_interval: DurationS = Field(default=86400.0, gt=0)

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return check_crontab(value)


def parse_listen(value: str) -> tuple[str, int] | None:
    """(host, port) from "host:port" ("[::1]:9464" for IPv6); None for "" (disabled)."""
    text = value.strip()
    if not text:
        return None
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f'{value!r} is not host:port, e.g. 127.0.0.1:9464 ("" disables)')
    return host, int(port_text)


class ServerSettings(_Section):
    """The daemon's /healthz and /metrics endpoint."""

    listen: str = "127.0.0.1:9464"
    #: a target is stale when its last success is older; None: 3 periods + jitter, at least 1m
    health_max_age: DurationS | None = Field(default=None, gt=0)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        parse_listen(value)
        return value.strip()

    @property
    def address(self) -> tuple[str, int] | None:
        return parse_listen(self.listen)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


_ID = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class TargetSettings(_Section):
    """What to harvest: a region (every workspace), a workspace (every gateway) or a gateway."""

    region_id: str = Field(pattern=_ID)
    workspace_id: str | None = Field(default=None, pattern=_ID)
    livy_compute_id: str | None = Field(default=None, pattern=_ID)
    #: overrides [schedule] interval/cron for every gateway of this target
    interval: DurationS | None = Field(default=None, gt=0)
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        return check_crontab(value)

    @model_validator(mode="after")
    def _gateway_needs_workspace(self) -> TargetSettings:
        if self.livy_compute_id and not self.workspace_id:
            raise ValueError("livy_compute_id needs workspace_id")
        if self.interval is not None and self.cron is not None:
            raise ValueError("set interval or cron, not both")
        return self


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    harvest: HarvestSettings = HarvestSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    logging: LoggingSettings = LoggingSettings()
    server: ServerSettings = ServerSettings()
    targets: tuple[TargetSettings, ...] = ()
    #: where the settings came from, for messages ("built-in defaults" or a path)
    source: str = Field(default="built-in defaults", exclude=True)


_SECTIONS = {
    name: info.annotation
    for name, info in Settings.model_fields.items()
    if name not in ("targets", "source")
}


def resolve_config_path(explicit: Path | None, env: Mapping[str, str]) -> Path | None:
    """--config, else HARVESTER_CONFIG, else config/harvester.toml when it exists."""
    if explicit is not None:
        return explicit
    from_env = env.get(f"{ENV_PREFIX}CONFIG", "").strip()
    if from_env:
        return Path(from_env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.__class__.__name__}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """Collect HARVESTER_<SECTION>__<KEY> values, and which variable set which key."""
    data: dict[str, Any] = {}
    origins: dict[tuple[str, ...], str] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :]
        if "__" in rest:
            section, _, key = rest.partition("__")
            section, key = section.lower(), key.lower()
            if section not in _SECTIONS:
                raise ConfigError(f"{name}: unknown section {section!r}")
            data.setdefault(section, {})[key] = value
            origins[(section, key)] = name
        elif rest == "TARGETS":
            try:
                data["targets"] = json.loads(value)
            except ValueError:
                raise ConfigError(
                    f"{name}: must be a JSON list of targets, e.g. "
                    '[{"region_id": "cn-hangzhou", "workspace_id": "w-..."}]'
                ) from None
            origins[("targets",)] = name
    if url := env.get(f"{ENV_PREFIX}DATABASE_URL"):
        data.setdefault("database", {})["url"] = url
        origins[("database", "url")] = f"{ENV_PREFIX}DATABASE_URL"
    return data, origins


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _describe(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _format_errors(
    exc: ValidationError, source: str, origins: Mapping[tuple[str, ...], str]
) -> str:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        key = _describe(loc)
        path = tuple(str(part) for part in loc)
        where = origins.get(path[:2]) or origins.get(path[:1])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where or source}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(path: Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise ConfigError naming file and key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        data = _read_toml(path)
        source = str(path)
    overrides, origins = _env_overrides(env)
    data = _merge(data, overrides)
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, origins)) from None
