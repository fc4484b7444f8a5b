"""Settings that would let a shop hurt itself with real mail, refused before anything is sent.

``tidings run``, ``tidings trigger`` and ``tidings worker`` call :func:`refuse_unsafe` first
and stop with exit 2 and one line naming the setting; ``tidings doctor`` shows the same
findings (:func:`start_refusals`) beside its network checks. Everything here is pure: it
reads settings and nothing else (no DNS, no sockets), so a start is never slowed or made
flaky by the network.

What is refused, and why:

* **A real email channel** (``sendgrid``, ``smtp``) **with a public URL recipients cannot
  use.** ``TIDINGS_PUBLIC_URL`` is the base of every unsubscribe link and of the
  ``List-Unsubscribe`` header. It must be ``https`` (RFC 8058 one-click; Gmail and Yahoo
  ignore an http one-click URL and treat the mail as lacking one) and its host must be
  public: an IP literal that is not globally routable (loopback, private, link-local,
  unspecified, shared or documentation ranges: :attr:`ipaddress.IPv4Address.is_global`),
  ``localhost`` or a name under a special-use suffix that no resolver on the internet
  answers (``.localhost``, ``.local``, ``.internal``, ``.home.arpa``, ``.lan``, ``.test``,
  ``.invalid``, ``.example``), or a name without a dot. A public-looking name that
  *resolves* only to private addresses is not refused here, since that needs DNS: ``tidings
  doctor`` resolves it and reports it (:mod:`engine.doctor`). The outbox channel writes
  files and is never refused: the default ``http://127.0.0.1:8026`` is right for it.
* **SMTP credentials without TLS.** ``TIDINGS_SMTP_REQUIRE_TLS=false`` (the default is
  true) with an ``smtp://user:pass@…`` URL says "a plain connection will do", which for a
  password it never does: a server (or an attacker in the path stripping STARTTLS from
  its greeting) that offers no STARTTLS would get the password in clear. The SMTP channel
  refuses to authenticate without TLS in any case (:mod:`engine.channels.smtp`), so such
  a configuration is incoherent and is refused at start, not discovered message by message.
  Accepted: ``smtps://`` (TLS from the first byte), ``smtp://`` with TLS required
  (STARTTLS or nothing), or no credentials at all (a local relay on port 25).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from engine.errors import TidingsError
from engine.settings import EmailChannelKind, Settings

#: Suffixes no public resolver answers (RFC 6761, 6762, 8375, 2606; ICANN's .internal; .lan by custom).
LOCAL_SUFFIXES = ("localhost", "local", "internal", "home.arpa", "lan", "test", "invalid", "example")
REAL_EMAIL_CHANNELS = frozenset({EmailChannelKind.sendgrid, EmailChannelKind.smtp})


class UnsafeSettings(TidingsError):
    """A setting that would send real mail unsafely; exit 2 (could not start)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One refused setting: which variable, what is wrong with it, and what to do."""

    setting: str
    problem: str
    hint: str

    def line(self) -> str:
        return f"{self.setting}: {self.problem}; {self.hint}"


def host_scope(host: str) -> str | None:
    """Why recipients cannot reach ``host`` (``"a loopback address"``, ``"a local name"`` …), or None.

    Pure: an IP literal is judged by its range, a name by its form and suffix only.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        return "empty"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        address = None
    if address is not None:
        return address_scope(address)
    if name == "localhost" or any(name == s or name.endswith("." + s) for s in LOCAL_SUFFIXES):
        return "a local name"
    if "." not in name:
        return "a name without a domain"
    return None


def address_scope(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not reachable from the internet, or None when it is a global address."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "an address that is not publicly routable"
    return None


def public_url_finding(settings: Settings) -> Finding | None:
    """The public URL's problem for a real email channel, or None (also None for the outbox)."""
    if settings.email_channel not in REAL_EMAIL_CHANNELS:
        return None
    url = str(settings.public_url).rstrip("/")
    shown = url if "public_url" in settings.model_fields_set else f"not set (default {url})"
    parts = urlsplit(url)
    channel = f"TIDINGS_EMAIL_CHANNEL={settings.email_channel.value}"
    if parts.scheme != "https":
        return Finding(
            "TIDINGS_PUBLIC_URL",
            f"{shown} is not https, and {channel} puts it in every unsubscribe link",
            "set the https address where the public app is reachable (RFC 8058 one-click needs https)",
        )
    scope = host_scope(parts.hostname or "")
    if scope is not None:
        return Finding(
            "TIDINGS_PUBLIC_URL",
            f"{shown}: host {parts.hostname} is {scope} that recipients cannot reach",
            "set the public https address of the public app (behind your proxy)",
        )
    return None


def smtp_tls_finding(settings: Settings) -> Finding | None:
    """SMTP credentials that could only be sent without TLS, or None."""
    if settings.email_channel is not EmailChannelKind.smtp or settings.smtp_url is None:
        return None
    parts = urlsplit(settings.smtp_url.get_secret_value())
    if parts.scheme == "smtps" or settings.smtp_require_tls or not parts.username:
        return None
    return Finding(
        "TIDINGS_SMTP_REQUIRE_TLS",
        "false while TIDINGS_SMTP_URL carries credentials on smtp://: the password would cross in clear",
        "use smtps://, or keep TIDINGS_SMTP_REQUIRE_TLS=true (STARTTLS required)",
    )


def start_refusals(settings: Settings) -> list[Finding]:
    """Every reason not to start sending with ``settings`` (empty: safe to start)."""
    return [f for f in (public_url_finding(settings), smtp_tls_finding(settings)) if f is not None]


def refuse_unsafe(settings: Settings) -> None:
    """Raise :class:`UnsafeSettings` (one line naming the setting) when ``settings`` must not send."""
    findings = start_refusals(settings)
    if findings:
        more = f" (and {len(findings) - 1} more: run `tidings doctor`)" if len(findings) > 1 else ""
        raise UnsafeSettings(f"refusing to start: {findings[0].line()}{more}")


__all__ = [
    "Finding",
    "UnsafeSettings",
    "address_scope",
    "host_scope",
    "public_url_finding",
    "refuse_unsafe",
    "smtp_tls_finding",
    "start_refusals",
]
