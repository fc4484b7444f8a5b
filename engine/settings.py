"""Settings from the environment (prefix ``TIDINGS_``) or ``.env``.

Relative paths (the SQLite file, the outbox folder) resolve against the workspace,
so ``TIDINGS_WORKSPACE=/srv/shop tidings run`` finds ``/srv/shop/var/tidings.db``
wherever it is started from. Secrets are ``SecretStr``: their ``repr`` and ``str``
are masked, so a settings object can be logged whole without leaking them.
"""

from __future__ import annotations

import os
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.errors import SettingsError

ENV_PREFIX = "TIDINGS_"


class EmailChannelKind(StrEnum):
    outbox = "outbox"
    sendgrid = "sendgrid"
    smtp = "smtp"


class SocialChannelKind(StrEnum):
    outbox = "outbox"
    x = "x"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class UnsignedWebhooks(StrEnum):
    reject = "reject"
    allow = "allow"


class RateLimiterKind(StrEnum):
    """Where the per-channel token buckets live (see :mod:`engine.runtime.ratelimit`)."""

    auto = "auto"  # Redis when TIDINGS_BROKER_URL is redis://, else the database
    redis = "redis"  # the broker's Redis (TIDINGS_BROKER_URL must be redis:// or rediss://)
    database = "database"  # a row per bucket in the store (SQLite or PostgreSQL)
    process = "process"  # each process its own bucket: N processes send N times the rate


class ShopSettings(BaseModel):
    """The ``shop`` template context. The postal address is required in marketing mail (CAN-SPAM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "Nordlys & Brad"
    url: AnyHttpUrl = AnyHttpUrl("https://shop.example.com")
    postal_address: str = "Nordlys & Brad OÜ, Telliskivi 60a, 10412 Tallinn, Estonia"
    returns_policy_url: AnyHttpUrl = AnyHttpUrl("https://shop.example.com/returns")

    def as_context(self) -> dict[str, str]:
        return {
            "name": self.name,
            "url": str(self.url).rstrip("/"),
            "postal_address": self.postal_address,
            "returns_policy_url": str(self.returns_policy_url),
        }


def _bind(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


Bind = Annotated[str, Field(description="HOST:PORT")]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        validate_default=True,
    )

    workspace: Path = Field(default_factory=Path.cwd)
    database_url: str = "sqlite:///var/tidings.db"
    timezone: str = "UTC"
    default_locale: str = "en"
    shop: ShopSettings = ShopSettings()
    from_email: str = "hello@shop.example.com"
    from_name: str = "Nordlys & Brad"

    email_channel: EmailChannelKind = EmailChannelKind.outbox
    social_channel: SocialChannelKind = SocialChannelKind.outbox
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: AnyHttpUrl = AnyHttpUrl("https://api.sendgrid.com")
    sendgrid_timeout_seconds: float = Field(default=10.0, gt=0)
    smtp_url: SecretStr | None = None
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_api_host: AnyHttpUrl = AnyHttpUrl("https://api.twitter.com")
    x_timeout_seconds: float = Field(default=10.0, gt=0)
    outbox_dir: Path = Path("var/outbox")

    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8026")
    public_bind: str = "127.0.0.1:8026"
    preview_bind: str = "127.0.0.1:8025"
    secret_key: SecretStr | None = None
    sendgrid_webhook_public_key: SecretStr | None = None
    sendgrid_webhook_unsigned: UnsignedWebhooks = UnsignedWebhooks.reject
    sendgrid_webhook_max_age_seconds: float = Field(default=600, gt=0)
    events_token: SecretStr | None = None
    log_format: LogFormat = LogFormat.text
    log_level: str = "INFO"
    broker_url: str | None = None
    broker_queue: str = Field(default="tidings", min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    #: A row handed to the broker that no worker picked up this long after, while the broker's
    #: queue is empty, lost its message (a flushed or restarted broker): it is published again.
    sweep_grace_seconds: float = Field(default=10, gt=0)
    #: Per-channel rate limits shared by every process and thread (see RateLimiterKind).
    rate_limiter: RateLimiterKind = RateLimiterKind.auto
    #: Leadership (which `tidings run` plans and fires): the leader renews its lease every
    #: LEADER_RENEW_SECONDS; a standby takes over once LEADER_TTL_SECONDS pass without a renewal.
    leader_ttl_seconds: float = Field(default=15, gt=0)
    leader_renew_seconds: float = Field(default=3, gt=0)

    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=5, gt=0)
    retry_max_seconds: float = Field(default=900, gt=0)
    #: A claim's lease; extended every quarter of it while the claiming process is alive, so a
    #: killed or hung worker's rows are claimable again this long after its last heartbeat.
    lease_seconds: float = Field(default=30, gt=0)
    concurrency: int = Field(default=16, ge=1, le=512)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    email_rate_per_second: float = Field(default=100, gt=0)
    x_posts_per_15min: float = Field(default=50, gt=0)
    misfire_grace_seconds: float = Field(default=3600, ge=0)
    conversion_window_days: int = Field(default=7, ge=1)

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if not scheme or scheme.split("+")[0] not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(f"expected a sqlite:/// or postgresql:// URL, got {value!r}")
        if scheme == "postgres" or scheme == "postgresql":
            # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; accept the Heroku-style spelling too.
            value = "postgresql+psycopg" + value[len(scheme) :]
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Tallinn)") from None
        return value

    @field_validator("default_locale")
    @classmethod
    def _known_locale(cls, value: str) -> str:
        try:
            Locale.parse(value.replace("-", "_"))
        except (UnknownLocaleError, ValueError):
            raise ValueError(f"unknown locale {value!r} (e.g. en, ro, et)") from None
        return value

    @field_validator("public_bind", "preview_bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return _bind(value)

    @field_validator("smtp_url")
    @classmethod
    def _smtp(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
                raise ValueError("expected smtp://user:pass@host:port or smtps://…")
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "amqp", "amqps", "memory"}:
            raise ValueError("expected a redis:// or amqp:// URL")
        return value or None

    @model_validator(mode="after")
    def _channels_have_credentials(self) -> Settings:
        if self.email_channel is EmailChannelKind.sendgrid and self.sendgrid_api_key is None:
            raise ValueError("TIDINGS_EMAIL_CHANNEL=sendgrid needs TIDINGS_SENDGRID_API_KEY")
        if self.email_channel is EmailChannelKind.smtp and self.smtp_url is None:
            raise ValueError("TIDINGS_EMAIL_CHANNEL=smtp needs TIDINGS_SMTP_URL")
        if self.social_channel is SocialChannelKind.x:
            missing = [
                f"TIDINGS_{name.upper()}"
                for name in ("x_consumer_key", "x_consumer_secret", "x_access_token", "x_access_token_secret")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"TIDINGS_SOCIAL_CHANNEL=x needs {', '.join(missing)}")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("TIDINGS_RETRY_MAX_SECONDS must not be below TIDINGS_RETRY_BASE_SECONDS")
        if self.leader_renew_seconds * 2 > self.leader_ttl_seconds:
            raise ValueError(
                "TIDINGS_LEADER_RENEW_SECONDS must be at most half of TIDINGS_LEADER_TTL_SECONDS "
                "(a leader must be able to miss a renewal without losing its lease)"
            )
        if self.rate_limiter is RateLimiterKind.redis and not _is_redis(self.broker_url):
            raise ValueError("TIDINGS_RATE_LIMITER=redis needs TIDINGS_BROKER_URL=redis://…")
        return self

    # --- derived values -------------------------------------------------------------

    @property
    def redis_url(self) -> str | None:
        """The broker URL when it is Redis (rate limits may live there), else None."""
        return self.broker_url if _is_redis(self.broker_url) else None

    @cached_property
    def workspace_dir(self) -> Path:
        return self.workspace.expanduser().resolve()

    def resolve(self, path: Path | str) -> Path:
        """A path from settings, relative ones taken against the workspace."""
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else self.workspace_dir / candidate

    @property
    def var_dir(self) -> Path:
        return self.workspace_dir / "var"

    @property
    def outbox_path(self) -> Path:
        return self.resolve(self.outbox_dir)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def database_url_resolved(self) -> str:
        """The SQLAlchemy URL, with a relative SQLite path taken against the workspace."""
        url = self.database_url
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:" and not url.startswith("sqlite:////"):
            path = url[len(prefix) :]
            if path and not path.startswith(":"):
                return prefix + str(self.resolve(path))
        return url

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def secret_key_value(self) -> str:
        """The signing key: configured, or generated once into ``var/secret_key`` (mode 0600)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        key_file = self.var_dir / "secret_key"
        if key_file.exists():
            return key_file.read_text().strip()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        return key

    def secret_values(self) -> list[str]:
        """Every configured secret in clear, for the log and error redactor."""
        values = []
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
            elif field.annotation is SecretStr and value:
                values.append(str(value))
        if self.smtp_url is not None:
            password = urlsplit(self.smtp_url.get_secret_value()).password
            if password:
                values.append(password)
        return values


def masked_url(url: str) -> str:
    """``url`` with any password masked, for messages and logs (``redis://:***@host:6379/0``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _is_redis(url: str | None) -> bool:
    return bool(url) and urlsplit(url or "").scheme in {"redis", "rediss"}


def _describe(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if not location:
        return message
    variable = ENV_PREFIX + "__".join(part.upper() for part in location)
    value = error.get("input")
    shown = "" if isinstance(value, (dict, list, SecretStr)) or value is None else f" (got {value!r})"
    if any(word in variable for word in ("KEY", "TOKEN", "SECRET", "SMTP_URL")):
        shown = ""
    return f"{variable}: {message}{shown}"


def load_settings(**overrides: Any) -> Settings:
    """Read settings, turning a validation failure into one line that names the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more)" if more else ""
        raise SettingsError(f"invalid settings: {_describe(dict(first))}{suffix}") from None
