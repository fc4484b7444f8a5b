"""What ``tidings validate`` and the preview check in templates and campaigns, beyond "does it render".

Per template: its ``sample.yaml`` typed against the context definition
(:mod:`engine.workspace.context_schema`; an unknown key or a value of the wrong kind is a
problem at its own line, and the template is not rendered with a broken sample: one problem,
not a cascade). Per template × locale file: MJML's own rules (:mod:`engine.render.mjml_rules`:
unknown tags and attributes, nesting, closing tags), attribute names against the context
definition (``contact.frist_name`` with a did-you-mean, in the file and at the line that has
it), then a render with the sample (as marketing when a marketing campaign sends it; when no
campaign does, as it is written: marketing when it shows the unsubscribe link, see
:func:`written_as_marketing`): undefined names, MJML errors and warnings, marketing mail without
the unsubscribe link or the postal address (the renderer refuses those), images without
``alt``, links that are malformed or not http(s)/mailto/tel, plain ``http:`` links in marketing
mail, HTML over Gmail's ~102 KB clip, X posts over 280 weighted characters, and templates that
fall back to per-message compilation (a warning: they work, slowly).

Per campaign: every ``if`` and event ``where`` expression evaluated with the samples of the
templates the campaign sends (values typed like real ones, so ``gift_card.amount * 1.15`` fails
here as it fails at send time: ``Decimal * float``), the languages each contact gets
(:mod:`engine.render.locale_checks`), and the names each template reads (``jinja2.meta``) against
the flow that sends it: ``coupon`` before any coupon step, or ``event`` without an event trigger,
is an error at the campaign's step line; so is a marketing campaign sending a service message
(no unsubscribe link), and a transactional campaign sending a template with the marketing
footer is a warning there.

A finding in a shared layout or partial is reported once, not once per template using it.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import TemplateSyntaxError
from twitter_text import parse_tweet

from engine.errors import Problem, SourceLocation
from engine.message import EmailMessage
from engine.render.compiled import CompiledEmail
from engine.render.context import read_sample, sample_context
from engine.render.errors import RenderError
from engine.render.locale_checks import LocaleChecks
from engine.render.mjml_rules import check_document
from engine.render.record import Record
from engine.render.renderer import Renderer, find_text
from engine.settings import Settings
from engine.workspace.context_schema import RECORDS, example_record, unknown_attributes
from engine.workspace.expressions import evaluate
from engine.workspace.models import Campaign, IfStep

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


def link_problem(href: str, *, marketing: bool = False, own: tuple[str, ...] = ()) -> str | None:
    """Why a rendered link is wrong, or None.

    ``marketing``: plain ``http:`` links are problems too (spam filters and mail clients distrust
    them in marketing mail), except the engine's own links starting with one of ``own`` (the
    unsubscribe link follows ``TIDINGS_PUBLIC_URL``, which ``doctor`` checks).
    """
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
    if (
        marketing
        and scheme == "http"
        and not any(own_prefix and value.startswith(own_prefix) for own_prefix in own)
    ):
        return f"link {value[:80]!r} is plain http: marketing mail links to https pages only"
    return None


def message_problems(
    compiled: CompiledEmail, message: EmailMessage, *, marketing: bool = False, own: tuple[str, ...] = ()
) -> list[Problem]:
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
        why = link_problem(href, marketing=marketing, own=own)
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
            problems.extend(
                message_problems(compiled, message, marketing=marketing, own=(renderer.unsubscribe_prefix,))
            )
    except RenderError as exc:
        problems.append(located(exc, renderer, template, locale))
    return problems


def located(error: RenderError, renderer: Renderer, template: str, locale: str | None) -> Problem:
    """A render error as a problem; one without a file of its own is at the template's locale file."""
    if error.path is not None:
        return error.as_problem()
    try:
        path = renderer.file_locale(template, locale)[0] if renderer.kind(template) == "email" else None
    except RenderError:
        path = None
    path = path or renderer.templates_dir / template
    return Problem(SourceLocation(path, error.line or 1), error.reason)


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


def check_workspace(
    workspace: Any,
    settings: Settings,
    *,
    renderer: Renderer | None = None,
    reached: dict[str, dict[str, int]] | None = None,
) -> list[Problem]:
    """Every template × locale with its sample, then the per-campaign checks; each finding once.

    ``reached``: per campaign, the contact locales it reaches (from the store, when ``validate`` has
    one); without it, the workspace's own languages.
    """
    renderer = renderer or Renderer(settings, workspace.templates_dir, labels=workspace.schedules.labels)
    problems: list[Problem] = []
    samples: dict[str, dict[str, Any]] = {}
    read: set[Path] = set()
    for template in renderer.templates():
        try:
            files = renderer.locale_files(template)
            kind = renderer.kind(template)
        except RenderError as exc:
            problems.append(exc.as_problem())
            continue
        sample_path = renderer.templates_dir / template / "sample.yaml"
        sample, sample_problems = read_sample(sample_path, settings)
        problems.extend(sample_problems)
        if not sample_path.is_file():
            problems.append(
                Problem(_at(sample_path), "no sample.yaml: preview and validate need one", severity="warning")
            )
        marketing = _is_marketing(renderer, template, _categories(workspace, template))
        sample = _with_guaranteed(sample, workspace, template)
        for _path, locale in files:
            found = source_problems(renderer, template, locale, kind, read)
            problems.extend(found)
            if sample_problems or any(p.severity == "error" for p in found):
                continue  # those problems are reported; rendering would repeat them in other words
            context = sample_context(sample, settings)
            problems.extend(check_template(renderer, template, context, locale=locale, marketing=marketing))
        if not sample_problems and sample_path.is_file():
            samples[template] = sample
    problems.extend(check_campaigns(workspace, renderer))
    problems.extend(check_expressions(workspace, samples, settings))
    problems.extend(LocaleChecks(renderer, workspace.campaigns.values()).run(reached))
    return unique(problems)


def _with_guaranteed(sample: dict[str, Any], workspace: Any, template: str) -> dict[str, Any]:
    """The sample with what every campaign sending ``template`` guarantees at that step and the sample
    leaves out — ``coupon`` after a coupon step, ``cutoff`` and ``trigger_date`` for a per-contact
    calendar trigger — as examples of their kind: a real send has them, so the template may use them."""
    sends = [
        (campaign, step)
        for campaign in workspace.campaigns.values()
        for step in campaign.iter_steps()
        if template in step.templates()
    ]
    if not sends:
        return sample
    guaranteed = set.intersection(*(_guaranteed_at(campaign, step) for campaign, step in sends))
    missing = {name for name in guaranteed if sample.get(name) is None}
    if not missing:
        return sample
    given = sample.get("now")
    now = given if isinstance(given, datetime) else datetime.now(UTC)
    filled = dict(sample)
    for name in missing:
        filled[name] = now.date() if name == "trigger_date" else example_record(RECORDS[name], now)
    return filled


def _guaranteed_at(campaign: Campaign, step: Any) -> set[str]:
    names: set[str] = set()
    for candidate in campaign.iter_steps():
        if candidate is step:
            break
        if candidate.kind == "coupon":
            names.add("coupon")
    calendar = campaign.trigger.calendar
    if calendar is not None:
        names.add("trigger_date")
        if calendar.date == "shipping_cutoff":
            names.add("cutoff")
    return names


def _is_marketing(renderer: Renderer, template: str, categories: list[str]) -> bool:
    """:func:`is_marketing`, from the compiled emails' names (compiled for the checks anyway)."""
    if categories:
        return "marketing" in categories
    try:
        if renderer.kind(template) != "email":
            return True
        return any(
            "unsubscribe_url" in renderer.compile_email(template, locale).variables
            for _path, locale in renderer.locale_files(template)
        )
    except RenderError:
        return True


def unique(problems: Iterable[Problem]) -> list[Problem]:
    """Each finding once (a shared layout's problem is found through every template that uses it)."""
    return list(dict.fromkeys(problems))


def source_problems(
    renderer: Renderer, template: str, locale: str | None, kind: str, read: set[Path]
) -> list[Problem]:
    """What the files of one template × locale say before anything renders: MJML's rules (emails) and
    attribute names against the context definition (each file read once per run, via ``read``)."""
    problems: list[Problem] = []
    try:
        if kind == "email":
            path, resolved = renderer.marked_document(template, locale)
            problems.extend(check_document(resolved.text, resolved.marked, path))
            files = list(dict.fromkeys(resolved.files))
        else:
            files = list(renderer.compile_post(template, locale).files)
    except RenderError:
        return problems  # reported by the render check
    env = renderer.environment(locale or renderer.default_locale, "plain")
    for path in files:
        if path in read:
            continue
        read.add(path)
        try:
            tree = env.parse(path.read_text(encoding="utf-8-sig"))
        except (TemplateSyntaxError, OSError, UnicodeDecodeError):
            continue  # reported at its line by the render check
        for unknown in unknown_attributes(tree):
            problems.append(Problem(SourceLocation(path, unknown.lineno), unknown.message))
    return problems


@dataclass(frozen=True)
class ExpressionSite:
    """One campaign expression: an ``if`` step's condition or the event trigger's ``where``."""

    source: str
    location: SourceLocation
    what: str  # "the if at step 'ideas'" …
    coupon_before: bool  # a coupon step comes before it in the flow (else ``coupon`` is none there)


def expression_sites(campaign: Campaign) -> list[ExpressionSite]:
    sites: list[ExpressionSite] = []
    event = campaign.trigger.event
    if event is not None and event.where:
        sites.append(
            ExpressionSite(
                event.where, campaign.source.at("trigger", "event", "where"), "the trigger's where", False
            )
        )
    coupon_seen = False
    for step in campaign.iter_steps():
        if step.kind == "coupon":
            coupon_seen = True
        if isinstance(step, IfStep):
            loc: list[str | int] = ["steps"]
            loc += [int(part) if part.isdigit() else part for part in step.path.split(".")]
            sites.append(
                ExpressionSite(
                    step.condition,
                    campaign.source.at(*loc, "if"),
                    f"the if at step {step.step_id!r}",
                    coupon_seen,
                )
            )
    return sites


def expression_context(campaign: Campaign, context: dict[str, Any], site: ExpressionSite) -> dict[str, Any]:
    """``context`` as the expression sees it in this campaign: its own campaign record, and no ``event``
    outside an event trigger nor ``coupon`` before a coupon step (they are none there at send time)."""
    local = dict(context)
    local["campaign"] = Record({"id": campaign.key, "name": campaign.name})
    if campaign.trigger.event is None:
        local["event"] = None
    if not site.coupon_before:
        local["coupon"] = None
    return local


def expression_failure(site: ExpressionSite, error: Exception, on: str) -> Problem:
    """An expression that raised: where it is, on what, why, and the usual fix for money arithmetic."""
    detail = str(getattr(error, "message", None) or error) or type(error).__name__
    hint = ""
    if "decimal.Decimal" in detail and "float" in detail:
        hint = (
            " (amounts are exact decimals: multiply or compare by whole numbers, or divide: "
            "'gift_card.amount * 115 / 100', not '* 1.15')"
        )
    return Problem(site.location, f"expression {site.source!r} fails {on}: {detail}{hint}")


def check_expressions(
    workspace: Any, samples: dict[str, dict[str, Any]], settings: Settings
) -> list[Problem]:
    """Every campaign expression evaluated with the samples of the templates the campaign sends."""
    problems: list[Problem] = []
    for campaign in workspace.campaigns.values():
        sites = expression_sites(campaign)
        if not sites:
            continue
        contexts = [
            (template, sample_context(samples[template], settings))
            for template in campaign.templates_used()
            if template in samples
        ]
        for site in sites:
            tries = [
                (context, f"with the sample of template {template!r} (templates/{template}/sample.yaml)")
                for template, context in contexts
            ]
            if contexts:
                template, first = contexts[0]
                present = _with_records_present(campaign, first, site)
                if present is not None:
                    names, context = present
                    tries.append((context, f"with the sample of template {template!r} plus {names}"))
            for context, where in tries:
                try:
                    evaluate(site.source, expression_context(campaign, context, site))
                except Exception as exc:  # noqa: BLE001 — whatever the sandbox raises is the finding
                    problems.append(expression_failure(site, exc, where))
                    break
    return problems


#: Records a contact may or may not have whatever the campaign (``event``, ``cutoff``, ``trigger_date``
#: and ``coupon`` depend on the trigger and the flow: they are present exactly when the sample says).
_MAYBE = {"order": "an order", "gift_card": "a gift card"}


def _with_records_present(
    campaign: Campaign, context: dict[str, Any], site: ExpressionSite
) -> tuple[str, dict[str, Any]] | None:
    """The context with every record a contact may have present (typed like real ones), so that a
    guarded branch (``order and gift_card and …``) is evaluated too; None when nothing is missing."""
    missing = [name for name in _MAYBE if context.get(name) is None]
    if site.coupon_before and context.get("coupon") is None:
        missing.append("coupon")
    if not missing:
        return None
    now = context["now"]
    filled = dict(context)
    for name in missing:
        filled[name] = Record(example_record(RECORDS[name], now))
    names = " and ".join(_MAYBE.get(name, f"a {name}") for name in missing)
    return names, filled


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
            written[template] = _is_marketing(renderer, template, [])
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
