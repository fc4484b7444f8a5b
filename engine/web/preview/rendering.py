"""One template, rendered for the preview exactly as the runtime would render it.

The preview calls the same :class:`~engine.render.Renderer` as the dispatcher, with a
context from the template's ``sample.yaml`` or from a real contact in the database (by
email or id). What differs is only what the preview adds around the message: the checks,
the inbox line, the dark-mode emulation of the iframe, and errors shown as text with
file and line instead of an exception.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select
from twitter_text import parse_tweet

from engine.clock import Clock
from engine.errors import Problem
from engine.message import EmailMessage
from engine.render import Record, Renderer, RenderError, load_sample, sample_context
from engine.render.audit import Check, Finding, audit_message
from engine.render.checks import check_template
from engine.settings import Settings
from engine.store.models import Contact
from engine.web.preview.catalog import TemplateInfo, WorkspaceCatalog, problem_view
from engine.web.preview.image_probe import ImageProbe

SECTIONS = (
    (Check.links, "Links"),
    (Check.images, "Images"),
    (Check.spam, "Spam"),
    (Check.accessibility, "Accessibility"),
)
X_MAX_LENGTH = 280
GMAIL_CLIP_BYTES = 102 * 1024
WIDTHS = ("desktop", "mobile")
THEMES = ("light", "dark")


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """What the pickers chose; all of it lives in the URL, so a reload or a shared link shows the same."""

    locale: str | None = None
    contact: str = ""
    width: str = "desktop"
    theme: str = "light"

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> ViewOptions:
        locale = (query.get("locale") or "").strip() or None
        if locale is not None and not re.fullmatch(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*", locale):
            locale = None
        width = query.get("width") or "desktop"
        theme = query.get("theme") or "light"
        return cls(
            locale=locale,
            contact=(query.get("contact") or "").strip()[:320],
            width=width if width in WIDTHS else "desktop",
            theme=theme if theme in THEMES else "light",
        )

    def query(self, *, locale: str | None = None) -> str:
        params = {"locale": locale or self.locale or "", "contact": self.contact, "theme": self.theme}
        return urlencode({key: value for key, value in params.items() if value and value != "light"})

    def as_dict(self) -> dict[str, Any]:
        return {"locale": self.locale, "contact": self.contact, "width": self.width, "theme": self.theme}


@dataclass
class PreviewResult:
    """What the template page and ``/api/templates/{name}`` show."""

    kind: str
    locale: str | None
    error: str | None = None
    message: EmailMessage | None = None
    text: str | None = None
    weighted_length: int | None = None
    valid: bool = True
    checks: list[dict[str, Any]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    sample_note: str | None = None
    campaign: str | None = None
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    @property
    def subject(self) -> str | None:
        return self.message.subject if self.message else None

    @property
    def html(self) -> str | None:
        return self.message.html if self.message else None

    def as_dict(self) -> dict[str, Any]:
        message = self.message
        size = message.size if message else None
        return {
            "kind": self.kind,
            "locale": self.locale,
            "error": self.error,
            "subject": message.subject if message else None,
            "preheader": message.preheader if message else None,
            "from_name": message.from_name if message else None,
            "from_email": message.from_email if message else None,
            "to_email": message.to_email if message else None,
            "html": message.html if message else None,
            "text": message.text if message else self.text,
            "headers": sorted(message.headers.items()) if message else [],
            "size": size,
            "size_text": _size_text(size),
            "weighted_length": self.weighted_length,
            "max_length": X_MAX_LENGTH,
            "valid": self.valid,
            "checks": self.checks,
            "files": self.files,
            "sample_note": self.sample_note,
            "campaign": self.campaign,
            "message_checks": self.sections() if self.kind == "email" and message is not None else [],
        }

    def sections(self) -> list[dict[str, Any]]:
        """The message checks, one section each, with a line saying what was looked at."""
        sections = []
        for check, title in SECTIONS:
            found = [f.as_dict() for f in self.findings if f.check is check]
            counted = self.checked.get(check.value, 0)
            problems = sum(1 for f in found if f["severity"] != "info")
            summary = {
                Check.links: f"{counted} link(s) and image source(s): well-formed, of an allowed scheme",
                Check.images: f"{counted} image(s) fetched or found in images/",
                Check.spam: "SpamAssassin-style body and subject rules",
                Check.accessibility: "WCAG 2.1 AA, as the European Accessibility Act applies it",
            }[check]
            sections.append(
                {
                    "check": check.value,
                    "title": title,
                    "summary": summary,
                    "problems": problems,
                    "findings": found,
                }
            )
        return sections


def _size_text(size: int | None) -> str:
    if size is None:
        return ""
    share = size / GMAIL_CLIP_BYTES * 100
    return f"{size / 1024:.1f} KB of HTML ({share:.0f}% of Gmail's ~102 KB clip)"


def weighted_length(text: str) -> tuple[int, bool]:
    """X's weighted length (URLs count 23, CJK and emoji 2) and whether the post fits."""
    parsed = parse_tweet(text)
    return int(parsed.weightedLength), bool(parsed.valid)


_DARK_MEDIA = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT_MEDIA = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
DARK_STYLE = (
    '<meta name="color-scheme" content="dark">'
    "<style>:root{color-scheme:dark}html,body{background:#121212 !important;color:#e8e8e8}</style>"
)


def dark_mode(html: str) -> str:
    """The email as a dark-mode client shows it: dark UA colours, and the template's own
    ``prefers-color-scheme: dark`` rules switched on (and its light-only rules off), because a
    sandboxed iframe cannot be told to emulate the media feature by itself."""
    html = _DARK_MEDIA.sub("(min-width: 0px)", html)
    html = _LIGHT_MEDIA.sub("(max-width: 0px) and (min-width: 1px)", html)
    head = _HEAD.search(html)
    if head is None:
        return DARK_STYLE + html
    return html[: head.end()] + DARK_STYLE + html[head.end() :]


class TemplatePreviews:
    """Renders templates for the preview with the runtime's renderer; thread-safe like it."""

    def __init__(
        self, settings: Settings, clock: Clock, engine: Engine | None, catalog: WorkspaceCatalog
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.engine = engine
        self.catalog = catalog
        self.renderer = Renderer(settings, settings.workspace_dir / "templates")
        self.images = ImageProbe(settings, clock)

    def invalidate(self, paths: list[Path]) -> None:
        """Forget compiled templates after a save.

        Everything is dropped, not just the saved file's templates: the preview shows one
        template at a time and recompiling it costs about a millisecond, while a stale cache
        (a new locale file, a renamed partial) would show the marketer something that is
        not what will be sent.
        """
        if any("templates" in path.parts for path in paths) or not paths:
            self.renderer.invalidate()

    # -- contexts -------------------------------------------------------------------------------

    def _sample(self, info: TemplateInfo) -> dict[str, Any]:
        return load_sample(self.renderer.templates_dir / info.name / "sample.yaml", self.settings)

    def _context(
        self, info: TemplateInfo, options: ViewOptions
    ) -> tuple[dict[str, Any], str | None, str | None]:
        """The template context, the contact's locale (if any) and a note on where the data came from.

        A real contact's context is the message the campaign that sends this template would send
        them (:mod:`engine.runtime.contact_view`: their own cutoff, zone and send time), exactly what
        ``tidings render --contact`` shows.
        """
        sample = self._sample(info)
        now = self.clock.now()
        if not options.contact:
            note = None if sample else "No sample.yaml: rendering with an empty sample contact."
            return sample_context(sample, self.settings, now=now), None, note
        if self.engine is None:
            raise RenderError(
                "no database configured: the contact picker needs one (rendering the sample instead)"
            )
        from engine.runtime.contact_view import ContactNotFound, contact_view, find_contact

        if info.sender is None:  # no campaign's facts to show: the contact's stored data only
            from engine.runtime.facts import MessageFacts
            from engine.runtime.message_context import StoredData, message_context

            with self.engine.connect() as conn:
                found = find_contact(conn, options.contact)
                if found is None:
                    raise RenderError(
                        f"no contact {options.contact!r} in the database (give an email address or an id)"
                    )
                data = StoredData.load(conn, [found.id])
            context = message_context(self.settings, None, MessageFacts(), data, contact_id=found.id, now=now)
            context["campaign"] = sample_context(sample, self.settings, now=now)["campaign"]
            note = f"Contact #{found.id} {found.email} from the database (no campaign sends this template)."
            return context, found.locale, note

        workspace = self.catalog.workspace()
        campaign = workspace.campaigns.get(info.sender.campaign_id)
        if campaign is None:
            raise RenderError(f"campaign {info.sender.campaign_id} does not load: fix its problems first")
        with self.engine.connect() as conn:
            try:
                view = contact_view(
                    conn, workspace, campaign, info.name, options.contact, settings=self.settings, now=now
                )
            except ContactNotFound as exc:
                raise RenderError(str(exc)) from None
        contact = view.contact
        note = (
            f"Contact #{contact.id} {contact.email} from the database, as {campaign.key} sends it: "
            + "; ".join(view.notes)
        )
        return view.context(self.settings), view.locale, note + "."

    def recent_contacts(self, limit: int = 20) -> list[str]:
        """A few addresses for the picker's suggestions (the newest contacts)."""
        if self.engine is None:
            return []
        try:
            with Session(self.engine) as session:
                emails = session.exec(
                    select(Contact.email).order_by(col(Contact.id).desc()).limit(limit)
                ).all()
        except SQLAlchemyError:  # a missing table or a database that went away: typed input still works
            return []
        return [str(email) for email in emails]

    # -- rendering ------------------------------------------------------------------------------

    def render(self, info: TemplateInfo, options: ViewOptions) -> PreviewResult:
        result = PreviewResult(kind=info.kind, locale=options.locale)
        sender = info.sender
        campaign_id = sender.campaign_id if sender else None
        step_id = sender.step_id if sender else None
        result.campaign = campaign_id
        try:
            context, contact_locale, result.sample_note = self._context(info, options)
            if sender is not None:
                context["campaign"] = Record({"id": sender.campaign_id, "name": sender.campaign_name})
            locale = options.locale or contact_locale or _sample_locale(context) or None
            if info.kind == "email":
                compiled = self.renderer.compile_email(info.name, locale, campaign_id, step_id)
                result.locale = compiled.locale
                result.files = [self._show(path) for path in compiled.files]
                result.message = self.renderer.render_email(
                    info.name,
                    context,
                    locale=locale,
                    campaign_id=campaign_id,
                    step_id=step_id,
                    marketing=info.marketing,
                )
            else:
                compiled_post = self.renderer.compile_post(info.name, locale)
                result.locale = compiled_post.locale
                result.files = [self._show(path) for path in compiled_post.files]
                post = self.renderer.render_post(info.name, context, locale=locale, campaign_id=campaign_id)
                result.text = post.text
                result.weighted_length, result.valid = weighted_length(post.text)
        except RenderError as exc:
            result.error = self._one_line(exc)
            return result
        # The same checks as `tidings validate`, but on this very context (a real contact's, too).
        problems = check_template(
            self.renderer,
            info.name,
            context,
            locale=locale,
            marketing=info.marketing,
            campaign_id=campaign_id,
            step_id=step_id,
            message_checks=result.message is None,
        )
        result.checks = [problem_view(p, self.settings.workspace_dir) for p in _unique(problems)]
        if result.message is not None:
            self._audit(result, result.message)
        return result

    def _audit(self, result: PreviewResult, message: EmailMessage) -> None:
        """The links, spam and accessibility checks, and whether each image loads."""
        audit = audit_message(message, locale=result.locale)
        result.findings = [*audit.findings, *self.images.findings(audit.images)]
        result.checked = {check.value: count for check, count in audit.checked.items()}
        result.checked[Check.images.value] = len({src for src, _ in audit.images})

    def _show(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.settings.workspace_dir).as_posix()
        except ValueError:
            return str(path)

    def _one_line(self, exc: RenderError) -> str:
        text = str(exc)
        root = str(self.settings.workspace_dir) + "/"
        return text.replace(root, "")


def _sample_locale(context: Mapping[str, Any]) -> str | None:
    contact = context.get("contact")
    locale = getattr(contact, "locale", None) if contact is not None else None
    return str(locale) if locale else None


def _unique(problems: list[Problem]) -> list[Problem]:
    return list({str(p): p for p in problems}.values())
