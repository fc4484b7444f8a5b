"""Reading the file outbox the way a mail client shows it.

The file channels write ``OUTBOX/email/*.eml`` (RFC 5322) and ``OUTBOX/social/*.json``
atomically, through a temporary dot-file renamed into place; dot-files are therefore
never listed. A season's simulation can leave tens of thousands of files, so a listing
stats every entry but parses only the newest ``limit`` of them.

A search (:class:`OutboxQuery`: address, campaign, subject, days) walks the files newest
first and parses headers only (about 60 µs a message) until ``limit`` of them match, so
it stays under two seconds on 20,000 messages; it then says it stopped at the limit. A
message's day is the day of its ``Date`` header (a post's ``posted_at``) in the shop's
zone, which is what the page shows; the file's time is used only when the message has none.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage as MimeMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from engine.web.preview.names import OUTBOX_KINDS, is_plain_name

LIST_LIMIT = 200


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One line of the outbox page."""

    kind: str  # email | social
    name: str
    modified: datetime
    size: int
    title: str  # the subject, or the post's text
    sender: str
    recipient: str
    campaign: str | None
    error: str | None = None
    sent_at: datetime | None = None  # the message's Date header (a post's posted_at)

    @property
    def when(self) -> datetime:
        return self.sent_at or self.modified

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "modified": self.modified.isoformat(),
            "sent_at": self.sent_at.isoformat() if self.sent_at else None,
            "size": self.size,
            "title": self.title,
            "from": self.sender,
            "to": self.recipient,
            "campaign": self.campaign,
            "error": self.error,
        }


class InvalidQuery(ValueError):
    """A search field that cannot be read (a date that is not YYYY-MM-DD); the page says which."""


@dataclass(frozen=True, slots=True)
class OutboxQuery:
    """What the outbox page searches by; every field given must match (case-insensitive substrings)."""

    address: str = ""  # the recipient's (To)
    campaign: str = ""
    subject: str = ""  # an email's subject or a post's text
    day_from: date | None = None
    day_to: date | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> OutboxQuery:
        def day(name: str, label: str) -> date | None:
            raw = (query.get(name) or "").strip()
            if not raw:
                return None
            try:
                return date.fromisoformat(raw)
            except ValueError:
                raise InvalidQuery(f"{label}: expected a date like 2026-12-14, got {raw[:40]!r}") from None

        return cls(
            address=(query.get("address") or "").strip()[:320],
            campaign=(query.get("campaign") or "").strip()[:200],
            subject=(query.get("subject") or "").strip()[:200],
            day_from=day("from", "from"),
            day_to=day("to", "to"),
        )

    @property
    def empty(self) -> bool:
        return not (self.address or self.campaign or self.subject or self.day_from or self.day_to)

    def matches(self, entry: OutboxEntry, zone: ZoneInfo) -> bool:
        if self.address and not _has(entry.recipient, self.address):
            return False
        if self.campaign and not _has(entry.campaign or "", self.campaign):
            return False
        if self.subject and not _has(entry.title, self.subject):
            return False
        day = entry.when.astimezone(zone).date()
        if self.day_from and day < self.day_from:
            return False
        return not (self.day_to and day > self.day_to)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "campaign": self.campaign,
            "subject": self.subject,
            "from": self.day_from.isoformat() if self.day_from else "",
            "to": self.day_to.isoformat() if self.day_to else "",
        }


def _has(text: str, needle: str) -> bool:
    return needle.casefold() in text.casefold()


@dataclass(frozen=True, slots=True)
class OutboxListing:
    entries: list[OutboxEntry]
    total: dict[str, int]
    query: OutboxQuery = field(default_factory=OutboxQuery)
    #: True when the search stopped at the limit: older matches may exist.
    limited: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": dict(self.total),
            "query": self.query.as_dict(),
            "matched": len(self.entries),
            "limited": self.limited,
            "entries": [entry.as_dict() for entry in self.entries],
        }


@dataclass(frozen=True, slots=True)
class OutboxEmail:
    """One ``.eml`` file, split as a mail client shows it."""

    name: str
    subject: str
    sender: str
    recipient: str
    date: str
    html: str | None
    text: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": "email",
            "name": self.name,
            "subject": self.subject,
            "from": self.sender,
            "to": self.recipient,
            "date": self.date,
            "html": self.html,
            "text": self.text,
            "headers": [[name, value] for name, value in self.headers],
        }


def _scan(folder: Path, suffix: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if e.name.endswith(suffix) and is_plain_name(e.name) and e.is_file()]
    except FileNotFoundError:
        return []


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat().st_mtime
    except OSError:
        return 0.0


def list_outbox(
    outbox_dir: Path,
    *,
    limit: int = LIST_LIMIT,
    query: OutboxQuery | None = None,
    zone: ZoneInfo | None = None,
) -> OutboxListing:
    """The newest ``limit`` files of both folders (matching ``query``), newest first, with folder totals."""
    found: list[tuple[str, os.DirEntry[str]]] = []
    total: dict[str, int] = {}
    for kind, suffix in OUTBOX_KINDS.items():
        entries = _scan(outbox_dir / kind, suffix)
        total[kind] = len(entries)
        found.extend((kind, entry) for entry in entries)
    if query is None or query.empty:
        newest = heapq.nlargest(limit, found, key=lambda item: (_mtime(item[1]), item[1].name))
        listed = [_summarise(kind, Path(entry.path)) for kind, entry in newest]
        return OutboxListing(listed, total, limited=sum(total.values()) > len(listed))
    if query.address:
        found = [item for item in found if item[0] == "email"]  # posts have no address
    found.sort(key=lambda item: (_mtime(item[1]), item[1].name), reverse=True)
    matched: list[OutboxEntry] = []
    for kind, entry in found:
        summary = _summarise(kind, Path(entry.path))
        if query.matches(summary, zone or ZoneInfo("UTC")):
            matched.append(summary)
            if len(matched) >= limit:
                return OutboxListing(matched, total, query, limited=True)
    return OutboxListing(matched, total, query)


def _summarise(kind: str, path: Path) -> OutboxEntry:
    try:
        stat = path.stat()
    except OSError as exc:
        return OutboxEntry(kind, path.name, datetime.fromtimestamp(0, UTC), 0, "", "", "", None, str(exc))
    modified = datetime.fromtimestamp(stat.st_mtime, UTC)
    try:
        if kind == "email":
            with path.open("rb") as handle:
                headers = BytesParser(policy=policy.default).parse(handle, headersonly=True)
            return OutboxEntry(
                kind,
                path.name,
                modified,
                stat.st_size,
                str(headers.get("Subject", "")),
                str(headers.get("From", "")),
                str(headers.get("To", "")),
                _str_or_none(headers.get("X-Tidings-Campaign")),
                sent_at=_header_date(headers.get("Date")),
            )
        post = read_post(path)
        return OutboxEntry(
            kind,
            path.name,
            modified,
            stat.st_size,
            str(post.get("text", "")),
            str(post.get("channel", "")),
            "",
            _str_or_none(post.get("campaign")),
            sent_at=_iso_or_none(post.get("posted_at")),
        )
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return OutboxEntry(kind, path.name, modified, stat.st_size, "", "", "", None, f"unreadable: {exc}")


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _header_date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _iso_or_none(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_email(path: Path) -> OutboxEmail:
    """Parse one ``.eml`` file; a part that cannot be decoded is shown as missing, not as an error page."""
    with path.open("rb") as handle:
        message = BytesParser(policy=policy.default).parse(handle)
    assert isinstance(message, MimeMessage)
    return OutboxEmail(
        name=path.name,
        subject=str(message.get("Subject", "")),
        sender=str(message.get("From", "")),
        recipient=str(message.get("To", "")),
        date=str(message.get("Date", "")),
        html=_part(message, "html"),
        text=_part(message, "plain"),
        headers=[(name, str(value)) for name, value in message.items()],
    )


def _part(message: MimeMessage, subtype: str) -> str | None:
    body = message.get_body(preferencelist=(subtype,))
    if body is None or body.get_content_subtype() != subtype:
        return None
    try:
        content = body.get_content()
    except (LookupError, ValueError):
        return None
    return content if isinstance(content, str) else None


def read_post(path: Path) -> dict[str, Any]:
    """One ``.json`` post; a file that is not a JSON object is refused with ValueError."""
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    return document
