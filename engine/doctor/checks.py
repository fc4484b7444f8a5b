"""``tidings doctor``: every check that stands between a shop's settings and mail that arrives.

Each check ends ``ok``, ``problem`` (with a one-line hint) or ``skipped`` (it does not apply
to the configured channels); a report with any problem makes ``tidings doctor`` exit 1.

* the start refusals of :mod:`engine.safety` (public URL, SMTP credentials without TLS),
  exactly as ``run``, ``trigger`` and ``worker`` apply them;
* the public URL's name resolved through DNS: a name that resolves only to private,
  loopback or link-local addresses is as unreachable as ``https://10.0.0.5`` (this needs DNS,
  so it is a doctor check and not a start refusal);
* the one-click endpoint reached at the public URL (:mod:`engine.doctor.probe`);
* the SendGrid webhook key, when the channel is SendGrid; the X credentials and API host,
  when the social channel is X;
* the From domain's SPF, DKIM, DMARC and DMARC alignment (:mod:`engine.doctor.records`).

DNS goes to ``TIDINGS_DNS_NAMESERVER`` when set (tests point it at a server on 127.0.0.1),
else to the system resolver; each look-up and the probe wait at most
``TIDINGS_DOCTOR_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from engine.doctor import probe
from engine.doctor.records import DnsUnavailable, Finding, Records, alignment, dkim, dmarc, find_dmarc, spf
from engine.safety import REAL_EMAIL_CHANNELS, address_scope, host_scope, public_url_finding, smtp_tls_finding
from engine.settings import EmailChannelKind, Settings, SocialChannelKind, UnsignedWebhooks


class Status(StrEnum):
    ok = "ok"
    problem = "problem"
    skipped = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status.value, "detail": self.detail, "hint": self.hint}


@dataclass(frozen=True, slots=True)
class Report:
    checks: list[Check]

    @property
    def problems(self) -> int:
        return sum(1 for check in self.checks if check.status is Status.problem)

    def as_dict(self) -> dict[str, object]:
        return {"problems": self.problems, "checks": [check.as_dict() for check in self.checks]}


def _from(name: str, finding: Finding) -> Check:
    if finding.ok:
        return Check(name, Status.ok, finding.detail)
    return Check(name, Status.problem, finding.detail, finding.hint)


def _skipped(name: str, why: str) -> Check:
    return Check(name, Status.skipped, why)


def run_doctor(settings: Settings) -> Report:
    """Every check, in the order an operator fixes them: settings, reachability, then DNS records."""
    real_email = settings.email_channel in REAL_EMAIL_CHANNELS
    checks = [_public_url(settings), _smtp_tls(settings)]
    records: Records | None = None
    dns_problem = ""
    try:
        records = Records(settings)
    except DnsUnavailable as exc:
        dns_problem = str(exc)
    checks.append(
        _public_host(settings, records, dns_problem) if real_email else _outbox("public URL resolves")
    )
    if real_email:
        public = str(settings.public_url)
        checks.append(
            _from("one-click endpoint", probe.one_click(public, timeout=settings.doctor_timeout_seconds))
        )
    else:
        checks.append(_outbox("one-click endpoint"))
    checks.append(_webhook_key(settings))
    checks.append(_x_credentials(settings))
    checks.extend(_domain_records(settings, records, dns_problem))
    return Report(checks)


def _outbox(name: str) -> Check:
    return _skipped(name, "email goes to the file outbox: no recipient follows a link yet")


def _public_url(settings: Settings) -> Check:
    if settings.email_channel not in REAL_EMAIL_CHANNELS:
        return _skipped("public URL", f"{str(settings.public_url).rstrip('/')} is fine for the file outbox")
    finding = public_url_finding(settings)
    if finding is not None:
        return Check("public URL", Status.problem, finding.problem, finding.hint)
    return Check("public URL", Status.ok, f"{str(settings.public_url).rstrip('/')} is https on a public name")


def _smtp_tls(settings: Settings) -> Check:
    if settings.email_channel is not EmailChannelKind.smtp or settings.smtp_url is None:
        return _skipped("SMTP TLS", "the email channel is not SMTP")
    finding = smtp_tls_finding(settings)
    if finding is not None:
        return Check("SMTP TLS", Status.problem, finding.problem, finding.hint)
    parts = urlsplit(settings.smtp_url.get_secret_value())
    if parts.scheme == "smtps":
        how = "smtps://: TLS from the first byte"
    elif settings.smtp_require_tls:
        how = "smtp:// with STARTTLS required (TIDINGS_SMTP_REQUIRE_TLS=true)"
    else:
        how = "a plain relay without credentials (TIDINGS_SMTP_REQUIRE_TLS=false)"
    return Check("SMTP TLS", Status.ok, how)


def _public_host(settings: Settings, records: Records | None, dns_problem: str) -> Check:
    name = "public URL resolves"
    host = urlsplit(str(settings.public_url)).hostname or ""
    if host_scope(host) is not None:
        return _skipped(name, f"{host} is refused above")
    try:
        ipaddress.ip_address(host.strip("[]"))
        return Check(name, Status.ok, f"{host} is a public address")
    except ValueError:
        pass
    if records is None:
        return Check(name, Status.problem, f"cannot resolve {host}: {dns_problem}", _DNS_HINT)
    try:
        addresses = records.addresses(host)
    except DnsUnavailable as exc:
        return Check(name, Status.problem, f"cannot resolve {host}: {exc}", _DNS_HINT)
    if not addresses:
        return Check(name, Status.problem, f"{host} has no A or AAAA record", "point it at the public app")
    public = [a for a in addresses if address_scope(ipaddress.ip_address(a)) is None]
    if not public:
        scopes = ", ".join(f"{a} ({address_scope(ipaddress.ip_address(a))})" for a in addresses)
        return Check(
            name,
            Status.problem,
            f"{host} resolves only to addresses recipients cannot reach: {scopes}",
            "publish the public app on a public address (a reverse proxy with TLS)",
        )
    return Check(name, Status.ok, f"{host} → {', '.join(addresses)}")


def _webhook_key(settings: Settings) -> Check:
    name = "SendGrid webhook key"
    if settings.email_channel is not EmailChannelKind.sendgrid:
        return _skipped(name, "the email channel is not SendGrid")
    if settings.sendgrid_webhook_public_key is not None:
        return Check(name, Status.ok, "TIDINGS_SENDGRID_WEBHOOK_PUBLIC_KEY is set: events are verified")
    if settings.sendgrid_webhook_unsigned is UnsignedWebhooks.allow:
        return Check(
            name,
            Status.problem,
            "no key, and unsigned posts are allowed: anyone can suppress any address",
            "set TIDINGS_SENDGRID_WEBHOOK_PUBLIC_KEY (SendGrid: Mail Settings › Signed Event Webhook)",
        )
    return Check(
        name,
        Status.problem,
        "TIDINGS_SENDGRID_WEBHOOK_PUBLIC_KEY is not set: every event post is refused, bounces are lost",
        "enable the signed event webhook in SendGrid and set its verification key",
    )


def _x_credentials(settings: Settings) -> Check:
    name = "X credentials"
    if settings.social_channel is not SocialChannelKind.x:
        return _skipped(name, "the social channel is not X")
    keys = (
        settings.x_consumer_key,
        settings.x_consumer_secret,
        settings.x_access_token,
        settings.x_access_token_secret,
    )
    if any(key is None or not key.get_secret_value() for key in keys):
        return Check(name, Status.problem, "some of the four TIDINGS_X_* keys are empty", "set all four")
    host = urlsplit(str(settings.x_api_host))
    if host.scheme != "https" and host_scope(host.hostname or "") is None:
        return Check(
            name,
            Status.problem,
            f"TIDINGS_X_API_HOST {settings.x_api_host} is not https: the signed requests travel in clear",
            "use https://api.x.com",
        )
    return Check(name, Status.ok, f"all four keys set; posts go to {str(settings.x_api_host).rstrip('/')}")


def _domain_records(settings: Settings, records: Records | None, dns_problem: str) -> list[Check]:
    domain = settings.from_email.rpartition("@")[2].strip().lower().rstrip(".")
    labels = [f"{what} ({domain})" for what in ("SPF", "DKIM", "DMARC", "DMARC alignment")]
    if records is None:
        return [Check(label, Status.problem, dns_problem, _DNS_HINT) for label in labels]
    try:
        spf_finding = spf(records, domain)
    except DnsUnavailable as exc:
        spf_finding = Finding(False, str(exc), _DNS_HINT)
    try:
        dkim_finding, selectors = dkim(records, domain, settings.dkim_selectors)
    except DnsUnavailable as exc:
        dkim_finding, selectors = Finding(False, str(exc), _DNS_HINT), []
    try:
        governing = find_dmarc(records, domain)
    except DnsUnavailable as exc:
        unknown = Finding(False, str(exc), _DNS_HINT)
        dmarc_finding = aligned = unknown
    else:
        dmarc_finding = dmarc(governing, domain)
        try:
            aligned = alignment(records, domain, selectors, governing, spf_finding.ok)
        except DnsUnavailable as exc:
            aligned = Finding(False, str(exc), _DNS_HINT)
    findings = (spf_finding, dkim_finding, dmarc_finding, aligned)
    return [_from(label, finding) for label, finding in zip(labels, findings, strict=True)]


_DNS_HINT = "check the network or TIDINGS_DNS_NAMESERVER"
