"""What ``tidings validate`` and the preview check in templates, beyond "does it render".

Per template × locale file, rendered with the template's ``sample.yaml`` (as marketing when
a marketing campaign sends it; when no campaign does, as it is written: marketing when it
shows the unsubscribe link, see :func:`written_as_marketing`): undefined names, MJML errors and
warnings, marketing mail without the unsubscribe link or the postal address (the renderer
refuses those), images without ``alt``, links that are not http(s)/mailto or are malformed,
HTML over Gmail's ~102 KB clip, X posts over 280 weighted characters, and templates that
fall back to per-message compilation (a warning: they work, slowly).

Per campaign: the names each template reads (``jinja2.meta``) against the flow that sends
it: ``coupon`` before any coupon step, or ``event`` without an event trigger, is an error at
the campaign's step line; so is a marketing campaign sending a service message (no
unsubscribe link), and a transactional campaign sending a template with the marketing
footer is a warning there.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twitter_text import parse_tweet

from engine.errors import Problem, SourceLocation
from engine.message import EmailMessage
from engine.render.compiled import CompiledEmail
from engine.render.context import load_sample, sample_context
from engine.render.errors import RenderError
from engine.render.renderer import Renderer, find_text
from engine.settings import Settings

GMAIL_CLIP_BYTES = 102 * 1024
X_MAX_WEIGHTED = 280
IMG = re.compile(r"<img\b[^>]*>", re.IGNORECASE)
ALT = re.compile(r"\balt\s*=", re.IGNORECASE)
SRC = re.compile(r'\bsrc="([^"]*)"', re.IGNORECASE)
A_HREF = re.compile(r'<a\b[^>]*?\bhref="([^"]*)"', re.IGNORECASE)
ALLOWED_SCHEMES = ("http", "https", "mailto", "tel")
TEL = re.compile(r"^\+?[0-9]{4,20}$")


def _at(path: Path | str, line: int = 1) -> SourceLocation:
    return SourceLocation(path, line)


def _where(compiled: CompiledEmail, *needles: str) -> SourceLocation:
    for needle in needles:
        found = find_text(compiled.files, needle)
        if found is not None:
            return _at(*found)
    return _at(compiled.path)


def _valid_host(host: str | None) -> bool:
    if not host:
        return False
    return "." in host or host == "localhost"


def link_problem(href: str) -> str | None:
    """Why a rendered link is wrong, or None."""
    value = htmllib.unescape(href).strip()
    if not value:
        return "a link has an empty href"
    if any(ch.isspace() for ch in value):
        return f"link {value[:80]!r} contains spaces"
    try:
        parts = urlsplit(value)
    except ValueError:
        return f"link {value[:80]!r} is malformed"
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        return f"link {value[:80]!r} is not an http(s), mailto or tel link"
    if scheme in ("http", "https") and not _valid_host(parts.hostname):
        return f"link {value[:80]!r} has no valid host"
    if scheme == "mailto" and "@" not in parts.path:
        return f"link {value[:80]!r} is not an email address"
    if scheme == "tel" and not TEL.match(parts.path):
        return f"link {value[:80]!r} is not a phone number (tel:+3726001234: digits only)"
    return None


def message_problems(compiled: CompiledEmail, message: EmailMessage) -> list[Problem]:
    """Checks on one rendered email (used by validate and by the preview)."""
    problems: list[Problem] = []
    for tag in IMG.findall(message.html):
        if not ALT.search(tag):
            src_match = SRC.search(tag)
            src = htmllib.unescape(src_match.group(1)) if src_match else ""
            tail = src.rsplit("/", 1)[-1].split("?", 1)[0]
            problems.append(
                Problem(_where(compiled, tail, "<mj-image"), f"image {src[:80]!r} has no alt text")
            )
    seen: set[str] = set()
    for href in A_HREF.findall(message.html):
        if href in seen:
            continue
        seen.add(href)
        why = link_problem(href)
        if why:
            raw = htmllib.unescape(href).split("?", 1)[0]
            problems.append(Problem(_where(compiled, raw, "href"), why))
    if message.size > GMAIL_CLIP_BYTES:
        problems.append(
            Problem(
                _at(compiled.path),
                f"the HTML is {message.size / 1024:.0f} KB; Gmail clips messages over ~102 KB",
            )
        )
    return problems


def check_template(
    renderer: Renderer,
    template: str,
    context: dict[str, Any],
    *,
    locale: str | None = None,
    marketing: bool = True,
    campaign_id: str | None = None,
    step_id: str | None = None,
    message_checks: bool = True,
) -> list[Problem]:
    """Render one template in one locale with ``context`` and report every finding.

    ``message_checks=False`` leaves out the checks of the rendered HTML (alt text, links, size),
    for a caller that runs the fuller :mod:`engine.render.audit` on it instead (the preview).
    """
    problems: list[Problem] = []
    try:
        kind = renderer.kind(template)
        if kind == "post":
            post = renderer.render_post(template, context, locale=locale, campaign_id=campaign_id)
            compiled_post = renderer.compile_post(template, locale)
            weighted = int(parse_tweet(post.text).weightedLength)
            if weighted > X_MAX_WEIGHTED:
                problems.append(
                    Problem(
                        _at(compiled_post.path),
                        f"the post is {weighted} weighted characters, over X's {X_MAX_WEIGHTED}",
                    )
                )
            return problems
        compiled = renderer.compile_email(template, locale, campaign_id, step_id)
        for warning in compiled.mjml_warnings:
            problems.append(Problem(_at(compiled.path), warning))
        if compiled.mode != "once":
            problems.append(
                Problem(
                    _at(compiled.path),
                    f"{compiled.fallback_reason}: it renders, but MJML compiles for every message",
                    severity="warning",
                )
            )
        message = renderer.render_email(
            template,
            context,
            locale=locale,
            campaign_id=campaign_id,
            step_id=step_id,
            marketing=marketing,
        )
        if message_checks:
            problems.extend(message_problems(compiled, message))
    except RenderError as exc:
        problems.append(exc.as_problem())
    return problems


def written_as_marketing(renderer: Renderer, template: str) -> bool:
    """Is the template written as marketing: does it show the unsubscribe link (``unsubscribe_url``)?

    Service messages extend ``_layouts/service.mjml``, whose footer has no unsubscribe link
    (there is nothing to leave); marketing ones extend ``_layouts/base.mjml``. A template that
    cannot be compiled counts as marketing (the strictest check; its error is reported anyway).
    """
    try:
        if renderer.kind(template) != "email":
            return True
        return any(
            "unsubscribe_url" in renderer.email_names(template, locale)
            for _path, locale in renderer.locale_files(template)
        )
    except RenderError:
        return True


def is_marketing(renderer: Renderer, template: str, categories: Iterable[str]) -> bool:
    """Checked as marketing when a marketing campaign sends it; when no campaign does, as it is written.

    ``categories``: the category (``marketing`` / ``transactional``) of each campaign that sends it.
    """
    sent_as = [str(getattr(category, "value", category)) for category in categories]
    if sent_as:
        return "marketing" in sent_as
    return written_as_marketing(renderer, template)


def _categories(workspace: Any, template: str) -> list[str]:
    return [str(getattr(c.category, "value", c.category)) for c in workspace.campaigns_using(template)]


def check_workspace(workspace: Any, settings: Settings) -> list[Problem]:
    """Every template × locale with its sample, then the per-campaign name checks."""
    renderer = Renderer(settings, workspace.templates_dir, labels=workspace.schedules.labels)
    problems: list[Problem] = []
    for template in renderer.templates():
        try:
            files = renderer.locale_files(template)
            sample_path = renderer.templates_dir / template / "sample.yaml"
            sample = load_sample(sample_path, settings)
        except RenderError as exc:
            problems.append(exc.as_problem())
            continue
        if not sample_path.is_file():
            problems.append(
                Problem(_at(sample_path), "no sample.yaml: preview and validate need one", severity="warning")
            )
        marketing = is_marketing(renderer, template, _categories(workspace, template))
        for _path, locale in files:
            context = sample_context(sample, settings)
            problems.extend(check_template(renderer, template, context, locale=locale, marketing=marketing))
    problems.extend(check_campaigns(workspace, renderer))
    return problems


def check_campaigns(workspace: Any, renderer: Renderer) -> list[Problem]:
    """``coupon`` used before any coupon step; ``event`` used without an event trigger."""
    problems: list[Problem] = []
    names_of: dict[str, frozenset[str]] = {}

    def names(template: str) -> frozenset[str]:
        if template not in names_of:
            found: set[str] = set()
            try:
                for _path, locale in renderer.locale_files(template):
                    if renderer.kind(template) == "email":
                        found |= renderer.compile_email(template, locale).variables
                    else:
                        found |= renderer.compile_post(template, locale).variables
            except RenderError:
                pass  # reported by the per-template checks
            names_of[template] = frozenset(found)
        return names_of[template]

    written: dict[str, bool] = {}

    def marketing_footer(template: str) -> bool:
        if template not in written:
            written[template] = written_as_marketing(renderer, template)
        return written[template]

    for campaign in workspace.campaigns.values():
        coupon_seen = False
        has_event = campaign.trigger.kind == "event"
        category = str(getattr(campaign.category, "value", campaign.category))
        for step in campaign.iter_steps():
            if step.kind == "coupon":
                coupon_seen = True
                if category == "transactional":
                    problems.append(
                        Problem(
                            campaign.source.step(step.path),
                            f"campaign {campaign.key!r} is transactional but hands out a coupon: "
                            "a discount on "
                            "future purchases is promotional (it needs consent or, for customers, "
                            "consent: {email: existing_customer}); make the campaign marketing",
                        )
                    )
                continue
            for template in step.templates():
                if template not in renderer.templates():
                    continue  # an unknown template is the loader's error
                used = names(template)
                where = campaign.source.step(step.path)
                if "coupon" in used and category == "transactional" and not coupon_seen:
                    problems.append(
                        Problem(
                            where,
                            f"template {template!r} shows a coupon, but campaign {campaign.key!r} is "
                            "transactional: a discount is promotional; make the campaign marketing",
                        )
                    )
                elif "coupon" in used and not coupon_seen:
                    problems.append(
                        Problem(
                            where,
                            f"template {template!r} uses coupon, but no coupon step comes before "
                            f"step {step.step_id!r}",
                        )
                    )
                if renderer.kind(template) == "email":
                    problems.extend(_footer_problems(template, category, marketing_footer(template), where))
                if "event" in used and not has_event:
                    problems.append(
                        Problem(
                            where,
                            f"template {template!r} uses event, but campaign {campaign.key!r} "
                            "has no event trigger",
                        )
                    )
    return problems


def _footer_problems(
    template: str, category: str, marketing_footer: bool, where: SourceLocation
) -> list[Problem]:
    """A marketing campaign needs the unsubscribe footer; a transactional one should not show it."""
    if category == "marketing" and not marketing_footer:
        return [
            Problem(
                where,
                f"template {template!r} is written as a service message (no unsubscribe link); a marketing "
                "campaign needs the marketing footer: extend _layouts/base.mjml, or make the campaign "
                "transactional",
            )
        ]
    if category == "transactional" and marketing_footer:
        return [
            Problem(
                where,
                f"template {template!r} shows the marketing footer (an unsubscribe link and "
                '"you asked us to keep you posted") in a transactional campaign: '
                "extend _layouts/service.mjml",
                severity="warning",
            )
        ]
    return []
