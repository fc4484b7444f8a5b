"""The From domain's mail authentication records, read with dnspython and judged as Gmail and Yahoo do.

Since 2024 Gmail and Yahoo require bulk senders to authenticate with SPF *and* DKIM, to
publish DMARC (``p=none`` at least) and to *align*: the domain in the visible ``From`` must
match the domain DKIM signed for (``d=``) or the one SPF checked (the envelope sender). Since
late 2025 Gmail rejects non-compliant bulk mail outright. Each function here returns a
:class:`Finding` (``ok``, what was found, and a hint when not ok); none raises for what DNS
says, only :class:`DnsUnavailable` when DNS could not be asked at all.

What is checked, and the limits of looking from outside:

* **SPF** — exactly one ``v=spf1`` TXT record at the From domain, ending in ``-all`` or
  ``~all`` (``+all`` lets anyone send as the shop, ``?all`` and no ``all`` say nothing), and
  at most 10 DNS-querying terms (``include``, ``a``, ``mx``, ``ptr``, ``exists``,
  ``redirect``) counted through the includes, or receivers answer ``permerror`` (RFC 7208
  4.6.4). The envelope sender a provider uses (SendGrid's ``emNNNN.domain`` bounce
  subdomain) cannot be seen from DNS; the record at the From domain is what the doctor can check.
* **DKIM** — a public key (``p=`` not empty) at ``SELECTOR._domainkey.DOMAIN`` for at least
  one of ``TIDINGS_DKIM_SELECTORS`` (SendGrid's automated security publishes ``s1`` and
  ``s2`` as CNAMEs, which the resolver follows). A key there means the provider can sign with
  ``d=`` the From domain.
* **DMARC** — one ``v=DMARC1`` record at ``_dmarc.DOMAIN``, else at a parent (the DMARCbis
  tree walk, without the public suffix list: parents are tried up to the last two labels),
  with ``p=none``, ``quarantine`` or ``reject``.
* **Alignment** — DMARC passes only through an aligned mechanism: a DKIM key under the
  From domain itself aligns in strict and relaxed mode; failing that, SPF at the From domain
  (strict) or, in relaxed mode (``aspf=r``, the default), at the organisational domain
  where DMARC was found. Neither means mail from this domain fails DMARC wherever the policy
  is enforced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdtypes.ANY.TXT
import dns.resolver

from engine.settings import Settings, split_nameserver

SPF_LOOKUP_LIMIT = 10
_SPF_LOOKUP_TERMS = re.compile(r"^[+\-~?]?(include:|a\b|mx\b|ptr\b|exists:|redirect=)", re.IGNORECASE)


class DnsUnavailable(Exception):
    """DNS could not be asked (no resolver configured, every nameserver timed out or failed)."""


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True, slots=True)
class Dmarc:
    """A DMARC record found by the tree walk: where, and its tags."""

    domain: str
    record: str
    tags: dict[str, str]


class Records:
    """TXT and address look-ups through one resolver (``TIDINGS_DNS_NAMESERVER`` or the system's)."""

    def __init__(self, settings: Settings) -> None:
        timeout = settings.doctor_timeout_seconds
        if settings.dns_nameserver:
            host, port = split_nameserver(settings.dns_nameserver)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [dns.nameserver.Do53Nameserver(host, port)]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except dns.resolver.NoResolverConfiguration:
                raise DnsUnavailable("no DNS resolver is configured on this machine") from None
        resolver.timeout = timeout
        resolver.lifetime = timeout
        self._resolver = resolver

    def txt(self, name: str) -> list[str]:
        """Every TXT string at ``name`` (each record's strings joined), [] when there is none."""
        answer = self._ask(name, "TXT")
        return [
            b"".join(rdata.strings).decode("utf-8", "replace")
            for rdata in answer
            if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT)
        ]

    def addresses(self, name: str) -> list[str]:
        """A and AAAA addresses of ``name`` (CNAMEs followed)."""
        found: list[str] = []
        for kind in ("A", "AAAA"):
            found.extend(rdata.to_text() for rdata in self._ask(name, kind))
        return found

    def _ask(self, name: str, kind: str) -> list[dns.rdata.Rdata]:
        try:
            answer = self._resolver.resolve(name, kind, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            raise DnsUnavailable(f"no nameserver answered for {name} {kind}: {_first_line(exc)}") from None
        except dns.exception.Timeout:
            raise DnsUnavailable(f"DNS timed out asking for {name} {kind}") from None
        except dns.exception.DNSException as exc:
            raise DnsUnavailable(f"DNS failed for {name} {kind}: {_first_line(exc)}") from None
        return list(answer)


def spf(records: Records, domain: str) -> Finding:
    found = [text for text in records.txt(domain) if text.lower().startswith("v=spf1")]
    if not found:
        return Finding(
            False, f"no SPF record at {domain}", "publish the v=spf1 record your provider gives you"
        )
    if len(found) > 1:
        return Finding(
            False, f"{len(found)} SPF records at {domain}", "merge them into one (receivers fail both)"
        )
    record = found[0]
    terms = record.split()[1:]
    ending = next((t.lower() for t in terms if t.lower().lstrip("+-~?") == "all"), None)
    if ending in ("all", "+all"):
        return Finding(False, f"{record!r} lets anyone send as {domain}", "end the record with -all or ~all")
    if ending not in ("-all", "~all") and not any(t.lower().startswith("redirect=") for t in terms):
        return Finding(False, f"{record!r} does not end in -all or ~all", "end the record with -all or ~all")
    lookups = _spf_lookups(records, record, seen={domain})
    if lookups > SPF_LOOKUP_LIMIT:
        return Finding(
            False,
            f"{record!r} needs {lookups} DNS look-ups (limit {SPF_LOOKUP_LIMIT}): receivers answer permerror",
            "flatten or drop includes",
        )
    return Finding(True, record)


def _spf_lookups(records: Records, record: str, seen: set[str], depth: int = 0) -> int:
    count = 0
    for term in record.split()[1:]:
        if not _SPF_LOOKUP_TERMS.match(term):
            continue
        count += 1
        target = term.lstrip("+-~?").split(":", 1)[-1].split("=", 1)[-1]
        is_include = term.lstrip("+-~?").lower().startswith(("include:", "redirect="))
        if is_include and target not in seen and depth < 10 and count <= SPF_LOOKUP_LIMIT:
            seen.add(target)
            nested = [text for text in records.txt(target) if text.lower().startswith("v=spf1")]
            if nested:
                count += _spf_lookups(records, nested[0], seen, depth + 1)
    return count


def dkim(records: Records, domain: str, selectors: tuple[str, ...]) -> tuple[Finding, list[str]]:
    """The finding, and the selectors with a usable key."""
    with_key: list[str] = []
    revoked: list[str] = []
    for selector in selectors:
        for text in records.txt(f"{selector}._domainkey.{domain}"):
            tags = _tags(text)
            if "p" not in tags:
                continue
            (with_key if tags["p"] else revoked).append(selector)
            break
    if with_key:
        return Finding(True, f"key at {', '.join(with_key)} (selector) under {domain}"), with_key
    tried = ", ".join(f"{s}._domainkey.{domain}" for s in selectors)
    what = f"only revoked keys (empty p=) at {', '.join(revoked)}" if revoked else f"no DKIM key at {tried}"
    return (
        Finding(
            False,
            what,
            "publish your provider's DKIM records (SendGrid: Sender Authentication), "
            "or name their selectors in TIDINGS_DKIM_SELECTORS",
        ),
        [],
    )


def find_dmarc(records: Records, domain: str) -> Dmarc | None:
    """The DMARC record that governs ``domain``: its own, else the nearest parent's."""
    labels = domain.rstrip(".").split(".")
    for start in range(0, max(1, len(labels) - 1)):
        candidate = ".".join(labels[start:])
        found = [text for text in records.txt(f"_dmarc.{candidate}") if text.lower().startswith("v=dmarc1")]
        if len(found) == 1:
            return Dmarc(candidate, found[0], _tags(found[0]))
        if len(found) > 1:
            return Dmarc(candidate, " | ".join(found), {"v": "DMARC1", "p": "<several records>"})
    return None


def dmarc(found: Dmarc | None, domain: str) -> Finding:
    if found is None:
        return Finding(
            False,
            f"no DMARC record at _dmarc.{domain} or its parents",
            f'publish _dmarc.{domain} TXT "v=DMARC1; p=none; rua=mailto:…" (Gmail/Yahoo require one)',
        )
    policy = found.tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Finding(
            False, f"{found.record!r} at _dmarc.{found.domain} has no valid p=", "set p=none at least"
        )
    where = "" if found.domain == domain else f" (inherited from {found.domain})"
    return Finding(True, f"p={policy}{where}: {found.record}")


def alignment(
    records: Records, domain: str, dkim_selectors: list[str], found: Dmarc | None, spf_ok: bool
) -> Finding:
    if dkim_selectors:
        return Finding(True, f"DKIM signs as d={domain} (selector {dkim_selectors[0]}): aligned")
    strict = (found.tags.get("aspf", "r").lower() == "s") if found is not None else False
    if spf_ok:
        return Finding(True, f"SPF at {domain} itself: aligned when the provider sends as {domain}")
    organisational = found.domain if found is not None else domain
    if not strict and organisational != domain:
        parent = [t for t in records.txt(organisational) if t.lower().startswith("v=spf1")]
        if parent:
            return Finding(True, f"SPF at {organisational}: relaxed alignment (aspf=r) with {domain}")
    return Finding(
        False,
        f"neither DKIM nor SPF is published for {domain}: DMARC fails by alignment",
        "publish your provider's DKIM keys under the From domain (or send from a domain that has them)",
    )


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(value.split())
    return tags


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
