"""Settings from the environment (prefix ``TIDINGS_``) or ``.env``.

Relative paths (the SQLite file, the outbox folder) resolve against the workspace,
so ``TIDINGS_WORKSPACE=/srv/shop tidings run`` finds ``/srv/shop/var/tidings.db``
wherever it is started from. Secrets are ``SecretStr``: their ``repr`` and ``str``
are masked, so a settings object can be logged whole without leaking them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from decimal import Decimal
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
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from engine.errors import SettingsError
from engine.opening_hours import InvalidHours, parse_hours

ENV_PREFIX = "TIDINGS_"
#: What may keep promotions from a contact (``TIDINGS_HOLD_MARKETING_WHILE``, a campaign's
#: ``limits.hold_marketing_while``): an open return or exchange, an open claim.
HOLD_REASONS: tuple[str, ...] = ("return_open", "claim_open")
PHONE = re.compile(r"^\+[0-9][0-9 ()-]{5,22}[0-9]$")
IMAGES_FOLDER = "images"


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
    """The ``shop`` template context. The postal address is required in marketing mail (CAN-SPAM).

    The support fields are how a customer reaches a person (every shipped email shows them):
    an address is required, phone, chat and hours may be switched off with an empty value.
    ``support_hours`` follows :mod:`engine.opening_hours` so that every locale can show it.

    ``images_url`` is where the email images are (``{{ shop.images_url }}/logo.png``): a shop's
    CDN or store, or, when not set, the public app itself, which serves the workspace's
    ``images/`` folder at ``TIDINGS_PUBLIC_URL/images`` — public wherever real mail goes out (its
    unsubscribe links need that already), local in development, so the demo's images load with no
    shop behind them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "Nordlys & Brad"
    url: AnyHttpUrl = AnyHttpUrl("https://shop.example.com")
    postal_address: str = "Nordlys & Brad OÜ, Telliskivi 60a, 10412 Tallinn, Estonia"
    returns_policy_url: AnyHttpUrl = AnyHttpUrl("https://shop.example.com/returns")
    support_email: str = "help@shop.example.com"
    support_phone: str | None = "+372 600 1234"
    support_chat_url: AnyHttpUrl | None = AnyHttpUrl("https://shop.example.com/help/chat")
    support_hours: str | None = "Mon-Fri 09:00-17:00, Sat 10:00-14:00 Europe/Tallinn"
    images_url: AnyHttpUrl | None = None

    @field_validator("support_email")
    @classmethod
    def _support_address(cls, value: str) -> str:
        value = value.strip()
        local, at, domain = value.rpartition("@")
        if not at or not local or "." not in domain or any(ch.isspace() for ch in value):
            raise ValueError("expected the address customers write to, e.g. help@shop.example.com")
        return value

    @field_validator("support_phone")
    @classmethod
    def _support_phone(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = " ".join(value.split())
        if not PHONE.match(value):
            raise ValueError("expected an international number as customers dial it, e.g. +372 600 1234")
        return value

    @field_validator("support_chat_url", mode="before")
    @classmethod
    def _no_chat(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("support_hours")
    @classmethod
    def _support_hours(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return str(parse_hours(value))
        except InvalidHours as exc:
            raise ValueError(str(exc)) from None

    def as_context(self) -> dict[str, Any]:
        """What templates see as ``shop`` (``shop.support.email`` …); absent support fields are None."""
        phone = self.support_phone
        return {
            "name": self.name,
            "url": str(self.url).rstrip("/"),
            "postal_address": self.postal_address,
            "returns_policy_url": str(self.returns_policy_url),
            "support": {
                "email": self.support_email,
                "phone": phone,
                "phone_dial": re.sub(r"[^+0-9]", "", phone) if phone else None,
                "chat_url": str(self.support_chat_url) if self.support_chat_url else None,
                "hours": self.support_hours,
            },
            "images_url": str(self.images_url).rstrip("/") if self.images_url else "",
        }


def split_nameserver(value: str) -> tuple[str, int]:
    """``(address, port)`` from ``1.2.3.4``, ``1.2.3.4:5353``, ``::1`` or ``[::1]:5353`` (port 53 default)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else (53 if not port else -1)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port) if port.isdigit() else -1
    return value, 53


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
    smtp_require_tls: bool = True
    """``smtp://`` must upgrade with STARTTLS or not send at all; false allows a plain connection
    (a local relay without credentials: credentials are never sent without TLS)."""
    x_consumer_key: SecretStr | None = None
    x_consumer_secret: SecretStr | None = None
    x_access_token: SecretStr | None = None
    x_access_token_secret: SecretStr | None = None
    x_api_host: AnyHttpUrl = AnyHttpUrl("https://api.twitter.com")
    x_timeout_seconds: float = Field(default=10.0, gt=0)
    outbox_dir: Path = Path("var/outbox")

    public_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8026")
    unsubscribe_mailto: str | None = None
    """A mailbox the shop processes: ``List-Unsubscribe`` then offers ``mailto:`` it too."""
    public_bind: str = "127.0.0.1:8026"
    preview_bind: str = "127.0.0.1:8025"
    secret_key: SecretStr | None = None
    sendgrid_webhook_public_key: SecretStr | None = None
    sendgrid_webhook_unsigned: UnsignedWebhooks = UnsignedWebhooks.reject
    sendgrid_webhook_max_age_seconds: float = Field(default=25 * 3600, gt=0)
    """Oldest signed timestamp the SendGrid webhook accepts. 25 h covers SendGrid's retries of a
    failed POST (up to 24 h) after an outage of ours, re-signed or not; a replayed signed batch
    changes nothing (events dedupe on ``sg_event_id``), so the wide window costs nothing real.
    A few minutes would refuse every retried batch, and its bounces and spam reports would be lost."""
    events_token: SecretStr | None = None
    care_token: SecretStr | None = None
    """Bearer token of ``POST /care/goodwill`` (a help desk's integration); unset: it answers 503."""
    care_token_label: str = Field(default="care-api", min_length=1, max_length=60, pattern=r"^[\w.@ -]+$")
    """Who a coupon given through the API is recorded as given by (``coupon.issued_by``)."""
    care_max_percent: Decimal = Field(default=Decimal(20), gt=0, le=100, decimal_places=2)
    """The most an agent may give (``care goodwill``, ``POST /care/goodwill``)."""
    care_coupon_days: int = Field(default=30, ge=1, le=366)
    """How long an agent's coupon stays valid."""
    hold_marketing_while: Annotated[tuple[str, ...], NoDecode] = HOLD_REASONS
    """Promotions skip a contact while one of these is open (``return_open``, ``claim_open``; comma
    separated, empty for none); a campaign's ``limits.hold_marketing_while`` replaces it."""
    return_open_days: int = Field(default=30, ge=1, le=365)
    """How long a return or exchange counts as open when the shop never says it was completed (an
    order's ``returned_at``, an ``exchange.shipped``): a forgotten return must not hold promotions forever."""
    dkim_selectors: Annotated[tuple[str, ...], NoDecode] = ("s1", "s2", "default")
    """DKIM selectors ``tidings doctor`` looks up (SendGrid's automated security uses s1 and s2)."""
    dns_nameserver: str | None = None
    """``HOST`` or ``HOST:PORT`` of the DNS server ``tidings doctor`` asks; unset: the system resolver."""
    doctor_timeout_seconds: float = Field(default=5.0, gt=0)
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
    render_timeout_seconds: float = Field(default=2.0, gt=0, le=300)
    #: Liveness (engine.liveness): a loop of the daemon (its tick, watcher, scheduler) that works
    #: this long on one step without progress (one message rendered or sent, one poll) makes
    #: /healthz degraded, naming the loop and what it was doing. Must exceed a render's budget and
    #: a provider's timeout, the longest step a healthy loop takes.
    stall_seconds: float = Field(default=120, gt=0)
    #: SIGTERM: how long the daemon waits for sends in flight and a fire in progress before it
    #: exits anyway, leaving them to their lease (claims) and the fire ledger (fires).
    shutdown_seconds: float = Field(default=30, gt=0)
    # The circuit breaker (engine.runtime.breaker): a marketing campaign whose recent sends bounce
    # or draw spam complaints above these rates is paused. Gmail and Yahoo require bulk senders to
    # stay under 0.3 % spam complaints (2024 sender requirements); Amazon SES reviews accounts at a
    # 5 % bounce rate. Rates are judged once a campaign has at least breaker_min_sends sends in the
    # window, so three early complaints out of ten sends do not stop a season.
    breaker_complaint_rate: float = Field(default=0.003, gt=0, le=1)
    breaker_bounce_rate: float = Field(default=0.05, gt=0, le=1)
    breaker_min_sends: int = Field(default=200, ge=1)
    breaker_window_days: float = Field(default=7, gt=0)

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

    @field_validator("dkim_selectors", mode="before")
    @classmethod
    def _selectors(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            names = tuple(str(part).strip() for part in value if str(part).strip())
            for name in names:
                if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", name):
                    raise ValueError(f"expected comma-separated DKIM selectors, got {name!r}")
            return names
        return value

    @field_validator("hold_marketing_while", mode="before")
    @classmethod
    def _holds(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        if isinstance(value, (list, tuple)):
            names = tuple(dict.fromkeys(str(part).strip() for part in value if str(part).strip()))
            for name in names:
                if name not in HOLD_REASONS:
                    raise ValueError(
                        f"unknown hold {name!r}: expected a comma-separated list of {', '.join(HOLD_REASONS)}"
                    )
            return names
        return value

    @field_validator("dns_nameserver")
    @classmethod
    def _nameserver(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        host, port = split_nameserver(value.strip())
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"expected an IP address with an optional :PORT, got {value!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"port out of range in {value!r}")
        return value.strip()

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailbox(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        address = value.strip().removeprefix("mailto:")
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain or any(c in address for c in ' <>?,;"\r\n'):
            raise ValueError("expected a plain address the shop reads, e.g. unsubscribe@shop.example.com")
        return address

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
        longest_step = max(
            self.render_timeout_seconds,
            self.sendgrid_timeout_seconds,
            self.smtp_timeout_seconds,
            self.x_timeout_seconds,
        )
        if self.stall_seconds <= longest_step:
            raise ValueError(
                f"TIDINGS_STALL_SECONDS must exceed the longest single step, {longest_step:g} s (the render "
                "budget or a provider timeout): a healthy send would be reported stuck"
            )
        if self.rate_limiter is RateLimiterKind.redis and not _is_redis(self.broker_url):
            raise ValueError("TIDINGS_RATE_LIMITER=redis needs TIDINGS_BROKER_URL=redis://…")
        if self.shop.images_url is None:
            self.shop = self.shop.model_copy(update={"images_url": AnyHttpUrl(self.public_images_url)})
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
    def images_dir(self) -> Path:
        """The workspace's ``images/`` folder, which the public app and the preview serve at ``/images``."""
        return self.workspace_dir / IMAGES_FOLDER

    @property
    def public_images_url(self) -> str:
        """Where the public app serves ``images/``: ``TIDINGS_PUBLIC_URL/images``."""
        return f"{str(self.public_url).rstrip('/')}/{IMAGES_FOLDER}"

    @property
    def images_served_by_public_app(self) -> bool:
        """True when the shop's image base is the public app's own (``TIDINGS_SHOP__IMAGES_URL`` unset)."""
        return str(self.shop.images_url).rstrip("/") == self.public_images_url

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
