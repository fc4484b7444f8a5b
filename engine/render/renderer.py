"""The one renderer: template name + context → :class:`EmailMessage` / :class:`SocialPost`.

Compile once per (template, locale file, campaign, step): front matter split, layouts and
partials resolved, MJML compiled by MRML with the Jinja in place (cached by content hash, so
every step of every campaign shares one MRML compilation), links UTM-tagged, the text part
derived, and the results parsed by Jinja, all four parts also as one template. Per message
only that one Jinja render runs, plus the unsubscribe token and the message's headers.
Campaign and step are part of the key because they are baked into the static links: per
message there is then nothing to do for them, and a workspace has few campaign steps, so
the extra Jinja compilations are few.

A failure anywhere raises :class:`RenderError` with the template file and line; a message
is returned whole or not at all. Marketing mail that does not show the unsubscribe link and
the postal address is refused here too, so a template edited after ``validate`` cannot send
a non-compliant message.

Every message renders under one :class:`~engine.workspace.sandbox.Budget` (loop iterations
and calls, ``TIDINGS_RENDER_TIMEOUT_SECONDS`` of wall time, string, list and integer sizes,
the size of the output): a template that exceeds it fails that message with a
:class:`RenderError` at the line of the tag that did it, and holds nothing up. The line is
found from the failing line of the Jinja template that ran (for a compile-once email, the
compiled HTML, where many tags share a line): its tags, narrowed to the construct that
failed (a loop over ``i``, a ``*``), are looked up in the author's files.
"""

from __future__ import annotations

import difflib
import html as htmllib
import re
import secrets
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Template, TemplateError, TemplateSyntaxError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.message import EmailMessage, SocialPost
from engine.render.combined import LINE_FILTER, SEPARATOR_NAME, combine, one_line, split_chunks, uncomment
from engine.render.compiled import CompiledEmail, CompiledPost, Lazy
from engine.render.context import CONTEXT_NAMES, MESSAGE_NAMES
from engine.render.environment import TemplateValueError, make_environment
from engine.render.errors import RenderError
from engine.render.frontmatter import FrontMatter, split_front_matter
from engine.render.labels import FILTER_NAME as LABEL_FILTER
from engine.render.labels import make_label_filter
from engine.render.links import FILTER_NAME, make_utm_filter, tag_links
from engine.render.locales import file_locale, localised, normalise
from engine.render.mjml import JINJA_TAG, MjmlCompiler, restore
from engine.render.record import Record
from engine.render.structure import Resolved, StructureResolver
from engine.render.text import html_to_text
from engine.render.unsubscribe import UnsubscribeLinks
from engine.settings import Settings
from engine.workspace.context_schema import suggest_attribute
from engine.workspace.labels import Labels
from engine.workspace.loader import load_labels
from engine.workspace.render_budget import ACTIVE, Budget, checked_output

EMAIL_FILE = "email.mjml"
POST_FILE = "post.txt"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*){2,}")
RENDER_FAILURES = (
    TemplateError,  # BudgetExceeded included
    TemplateValueError,
    ArithmeticError,
    TypeError,
    ValueError,
    LookupError,
    RecursionError,
)
MAX_TEMPLATE_BYTES = 1 << 20
# The source each compiled Jinja template was made from, to find the tag a runtime error came from.
_SOURCES: weakref.WeakKeyDictionary[Template, str] = weakref.WeakKeyDictionary()
UNSAFE_ATTRIBUTE = re.compile(r"access to attribute '([^']+)' of")
UNDEFINED_NAME = re.compile(r"'([A-Za-z_]\w*)' is undefined|has no attribute '([A-Za-z_]\w*)'")


class UnknownTemplate(RenderError):
    """No such template folder (exit 2 in the CLI: the command could not start)."""

    exit_code = 2


class Renderer:
    """Compiles templates on first use and renders them per recipient. Thread-safe."""

    def __init__(
        self,
        settings: Settings,
        templates_dir: Path,
        *,
        mjml: MjmlCompiler | None = None,
        labels: Labels | None = None,
    ) -> None:
        """``labels`` default to those of the workspace holding ``templates_dir`` (its schedules/),
        re-read by :meth:`invalidate`; given labels are kept as they are."""
        self.settings = settings
        self.templates_dir = Path(templates_dir)
        self._own_labels = labels is None
        self.labels: Labels = labels if labels is not None else load_labels(self.templates_dir.parent)
        self.default_locale = normalise(settings.default_locale) or "en"
        self.mjml = mjml or MjmlCompiler()
        self.unsubscribe_prefix = f"{str(settings.public_url).rstrip('/')}/u/"
        self._envs: dict[tuple[str, str], ImmutableSandboxedEnvironment] = {}
        self._emails: dict[tuple[str, str, str | None, str | None], CompiledEmail] = {}
        self._posts: dict[tuple[str, str], CompiledPost] = {}
        # (template, requested locale, campaign, step) → compiled: no file system access per message.
        self._email_lookup: dict[tuple[str, str | None, str | None, str | None], CompiledEmail] = {}
        self._lock = threading.RLock()
        self._globals: dict[int, dict[str, Any]] = {}
        self._links: UnsubscribeLinks | None = None
        self._syntax_ok: set[tuple[str, str]] = set()  # (path, text) of shared files that parse
        self.budget = Budget(seconds=settings.render_timeout_seconds)

    def use_templates(self, templates_dir: Path, labels: Labels) -> None:
        """Render from ``templates_dir`` from now on, with ``labels`` (a reviewed copy of a workspace's
        templates has no schedules/ beside it: its labels are the workspace's); drops what was compiled."""
        with self._lock:
            self.templates_dir = Path(templates_dir)
            self.labels = labels
            self._own_labels = False
        self.invalidate()

    # --- discovery ---------------------------------------------------------------------

    def templates(self) -> list[str]:
        """Template folder names (folders starting with ``_`` hold layouts and partials)."""
        if not self.templates_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.templates_dir.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
        )

    def kind(self, template: str) -> str:
        """``email`` or ``post``."""
        folder = self._folder(template)
        if any(folder.glob("email*.mjml")):
            return "email"
        if any(folder.glob("post*.txt")):
            return "post"
        raise RenderError(f"template {template!r} has neither email.mjml nor post.txt", path=folder)

    def locale_files(self, template: str) -> list[tuple[Path, str]]:
        """Every locale file of a template with the locale it stands for, default first."""
        folder = self._folder(template)
        base = EMAIL_FILE if self.kind(template) == "email" else POST_FILE
        stem, suffix = base.split(".")
        files = [
            p for p in folder.glob(f"{stem}*.{suffix}") if p.name == base or p.name.startswith(f"{stem}.")
        ]
        found = [(p, file_locale(p, stem, self.default_locale)) for p in files]
        return sorted(found, key=lambda item: (item[0].name != base, item[1]))

    def _folder(self, template: str) -> Path:
        if not NAME.match(template or "") or template.startswith("_"):
            raise UnknownTemplate(f"invalid template name {template!r}")
        folder = self.templates_dir / template
        if not folder.is_dir():
            close = difflib.get_close_matches(template, self.templates(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownTemplate(f"unknown template {template!r}{hint}")
        return folder

    # --- environments --------------------------------------------------------------------

    def environment(self, locale: str, kind: str) -> ImmutableSandboxedEnvironment:
        """``kind``: ``html`` / ``text`` for compiled output, ``mjml`` / ``plain`` for authored sources."""
        key = (locale, kind)
        env = self._envs.get(key)
        if env is None:
            extra = {
                FILTER_NAME: make_utm_filter(self.unsubscribe_prefix),
                LINE_FILTER: one_line,
                LABEL_FILTER: make_label_filter(lambda: self.labels, locale, self.default_locale),
            }
            env = make_environment(
                locale,
                self.settings.timezone,
                html=kind in ("html", "mjml"),
                compiled=kind in ("html", "text"),
                extra_filters=extra,
            )
            self._envs[key] = env
        return env

    def email_names(self, template: str, locale: str | None = None) -> frozenset[str]:
        """Context names an email's locale file reads, layouts and partials included, without compiling it.

        Parsing the resolved source costs about a millisecond where a compile (MRML, text part,
        one-render template) costs tens; enough to tell whether a template shows the
        unsubscribe link (:func:`engine.render.checks.written_as_marketing`).
        """
        path, front, used = self._email_file(template, locale)
        resolved = StructureResolver(self.templates_dir, used, self.default_locale).resolve(path, front.body)
        plain = self.environment(used, "plain")
        sources = [resolved.text, front.values.get("subject", ""), front.values.get("preheader", "")]
        for source, where in zip(sources, (path, path, path), strict=True):
            self._parse(plain, source, where, front.body_offset, parse_only=True)
        try:
            return _variables(plain, sources)
        except TemplateSyntaxError as exc:  # what parsing alone lets through: an unknown filter or test
            where, line = unknown_name_at(resolved.files, exc.message) or (path, front.body_offset + 1)
            raise RenderError(f"Jinja syntax error: {exc.message}", path=where, line=line) from None

    def marked_document(self, template: str, locale: str | None = None) -> tuple[Path, Resolved]:
        """An email's locale file resolved with a file-and-line marker before every tag (the MJML check)."""
        path, front, used = self._email_file(template, locale)
        resolver = StructureResolver(self.templates_dir, used, self.default_locale, mark=True)
        return path, resolver.resolve(path, front.body, body_offset=front.body_offset)

    def _declared_locale(self, front: FrontMatter, path: Path, used: str) -> str:
        """The language a file is written in: its front matter's ``locale``, else the one its name says.

        The default file (``email.mjml``) may declare another language than the default locale
        (a shop writing only in Romanian): its dates, money and partials then follow that language.
        A locale file (``email.ro.mjml``) may only declare its own.
        """
        declared = normalise(front.values.get("locale"))
        if declared is None:
            return used
        if path.name != EMAIL_FILE and declared != used:
            raise RenderError(
                f"front matter says locale {declared} but the file name says {used}; remove one",
                path=path,
                line=front.line_of("locale"),
            )
        return declared

    def file_locale(self, template: str, locale: str | None = None) -> tuple[Path, str]:
        """The email file a contact in ``locale`` gets, and the language it is written in."""
        path, _front, used = self._email_file(template, locale)
        return path, used

    def _email_file(self, template: str, locale: str | None) -> tuple[Path, FrontMatter, str]:
        """The email file for ``locale``, its front matter, and the language it is written in."""
        folder = self._folder(template)
        path, used = localised(folder / EMAIL_FILE, locale, self.default_locale)
        if not path.is_file():
            raise RenderError(f"template {template!r} has no {EMAIL_FILE}", path=path)
        front = split_front_matter(_read(path), path)
        return path, front, self._declared_locale(front, path, used)

    # --- compiling ---------------------------------------------------------------------

    def compile_email(
        self,
        template: str,
        locale: str | None = None,
        campaign_id: str | None = None,
        step_id: str | None = None,
    ) -> CompiledEmail:
        fast = (template, locale, campaign_id, step_id)
        compiled = self._email_lookup.get(fast)
        if compiled is not None:
            return compiled
        folder = self._folder(template)
        path, used = localised(folder / EMAIL_FILE, locale, self.default_locale)
        key = (str(path), used, campaign_id, step_id)
        with self._lock:
            compiled = self._emails.get(key)
            if compiled is None:
                compiled = self._compile_email(template, path, used, locale, campaign_id, step_id)
                self._emails[key] = compiled
            self._email_lookup[fast] = compiled
        return compiled

    def _compile_email(
        self,
        template: str,
        path: Path,
        used: str,
        locale: str | None,
        campaign_id: str | None,
        step_id: str | None,
    ) -> CompiledEmail:
        if not path.is_file():
            raise RenderError(f"template {template!r} has no {EMAIL_FILE}", path=path)
        source = _read(path)
        front = split_front_matter(source, path)
        used = self._declared_locale(front, path, used)
        if "subject" not in front.values:
            raise RenderError("front matter needs a subject", path=path, line=1)
        plain = self.environment(used, "plain")
        subject = self._parse(plain, front.values["subject"], path, front.line_of("subject"), fixed_line=True)
        preheader = None
        if "preheader" in front.values:
            preheader = self._parse(
                plain, front.values["preheader"], path, front.line_of("preheader"), fixed_line=True
            )
        separator = f"\x1e{secrets.token_hex(16)}\x1e"
        headline = plain.from_string(front.values["subject"] + separator + front.values.get("preheader", ""))
        resolver = StructureResolver(self.templates_dir, used, self.default_locale)
        resolved = resolver.resolve(path, front.body)
        self._check_syntax(path, front.body, front.body_offset, resolved.files[1:])
        document = _prepare_document(resolved.text, used, has_preheader=preheader is not None, path=path)
        sources = [document, front.values["subject"], front.values.get("preheader", "")]

        text_template: Template | None = None
        text_source = ""
        authored_text = False
        text_path = path.with_suffix(".txt")  # the text part written beside this very file, if any
        files = list(dict.fromkeys(resolved.files))
        if text_path.is_file():
            files.append(text_path)
            text_source = _read(text_path)
            text_template = self._parse(plain, text_source, text_path, 0)
            sources.append(text_source)
            authored_text = True

        try:
            result = self.mjml.compile(document)
        except RenderError as exc:
            raise _mjml_error(exc, document, files, path, front.body_offset) from None
        common: dict[str, Any] = {
            "name": template,
            "path": path,
            "locale": used,
            "files": tuple(files),
            "body_offset": front.body_offset,
            "subject": subject,
            "preheader": preheader,
            "from_header": front.values.get("from"),
            "reply_to": front.values.get("reply_to"),
            "mjml_warnings": result.warnings,
            "campaign_id": campaign_id,
            "step_id": step_id,
            "source": document,
            "lazy_variables": Lazy(lambda: _variables(plain, sources)),
            "headline": headline,
            "separator": separator,
        }
        if result.lost_tags:
            lost = ", ".join(tag[:40] for tag in result.lost_tags[:3])
            mjml_env = self.environment(used, "mjml")
            return CompiledEmail(
                lazy_html=Lazy.of(self._parse(mjml_env, document, path, front.body_offset, files=files)),
                lazy_text=Lazy.of(text_template),
                text_source=text_source,
                mode="per_message",
                fallback_reason=f"Jinja inside MJML structure ({lost}) is compiled per message",
                **common,
            )
        page, tags = tag_links(
            result.html,
            result.tags,
            campaign_id=campaign_id,
            step_id=step_id,
            skip_prefix=self.unsubscribe_prefix,
        )
        html_source = restore(page, tags)
        lazy_text: Lazy[Template | None] = Lazy.of(text_template)
        if text_template is None:
            text_source = restore(html_to_text(page, tags), tags)
            generated = text_source
            lazy_text = Lazy(
                lambda: self._parse(
                    self.environment(used, "text"), generated, path, front.body_offset, files=files
                )
            )
        combined_source = combine(
            subject=uncomment(plain, front.values["subject"]),
            preheader=uncomment(plain, front.values["preheader"]) if preheader is not None else None,
            html=html_source,
            text=uncomment(plain, text_source) if authored_text else text_source,
            separator=separator,
        )
        return CompiledEmail(
            lazy_html=Lazy(
                lambda: self._parse(
                    self.environment(used, "html"), html_source, path, front.body_offset, files=files
                )
            ),
            lazy_text=lazy_text,
            html_source=html_source,
            text_source=text_source,
            mode="once",
            combined=None
            if combined_source is None
            else self._parse(self.environment(used, "text"), combined_source, path, 0, files=files),
            **common,
        )

    def compile_post(self, template: str, locale: str | None = None) -> CompiledPost:
        folder = self._folder(template)
        path, used = localised(folder / POST_FILE, locale, self.default_locale)
        key = (str(path), used)
        compiled = self._posts.get(key)
        if compiled is None:
            with self._lock:
                if not path.is_file():
                    raise RenderError(f"template {template!r} has no {POST_FILE}", path=path)
                resolver = StructureResolver(self.templates_dir, used, self.default_locale)
                source = _read(path)
                resolved = resolver.resolve(path, source)
                self._check_syntax(path, source, 0, resolved.files[1:])
                text = self._parse(
                    self.environment(used, "plain"), resolved.text, path, 0, files=resolved.files
                )
                compiled = CompiledPost(
                    template, path, used, tuple(dict.fromkeys(resolved.files)), text, resolved.text
                )
                self._posts[key] = compiled
        return compiled

    def _check_syntax(self, path: Path, body: str, offset: int, others: list[Path]) -> None:
        """Jinja syntax errors at the line of the file that has them (before any merging).

        A layout or partial is shared by every template and locale: each version of it is parsed
        once per renderer (``_syntax_ok``), not once per compile.
        """
        env = self.environment(self.default_locale, "plain")
        self._parse(env, body, path, offset, parse_only=True)
        for other in dict.fromkeys(others):
            text = _read(other)
            key = (str(other), text)
            if key not in self._syntax_ok:
                self._parse(env, text, other, 0, parse_only=True)
                self._syntax_ok.add(key)

    @staticmethod
    def _parse(
        env: ImmutableSandboxedEnvironment,
        source: str,
        path: Path,
        offset: int,
        *,
        fixed_line: bool = False,
        parse_only: bool = False,
        files: Sequence[Path] = (),
    ) -> Template:
        """``source`` compiled (or only parsed); a syntax error is a :class:`RenderError` at its line.

        ``files`` are the authored files ``source`` was resolved from (layouts and partials in
        place): a name Jinja only rejects when compiling (an unknown filter or test) is then found
        in them, so the error names the author's file and line, not the resolved document's.
        """
        try:
            if parse_only:
                env.parse(source)
                return None  # type: ignore[return-value]
            template = env.from_string(source)
            _SOURCES[template] = source
            return template
        except TemplateSyntaxError as exc:
            line = offset if fixed_line else (exc.lineno or 1) + offset
            found = unknown_name_at(files, exc.message) if files else None
            where, line = found or (path, line)
            raise RenderError(f"Jinja syntax error: {exc.message}", path=where, line=line) from None
        except RecursionError:
            line = offset if fixed_line else _deepest_line(source) + offset
            raise RenderError(
                "Jinja syntax error: brackets nested too deeply to read", path=path, line=line
            ) from None

    # --- rendering ---------------------------------------------------------------------

    def unsubscribe_url(self, contact_id: int, campaign_id: str | None = None) -> str:
        """The signed one-click link for this contact (verifiable with ``UnsubscribeTokens.verify``)."""
        links = self._links
        if links is None:
            links = self._links = UnsubscribeLinks(
                self.settings.secret_key_value(), str(self.settings.public_url)
            )
        return links.url(int(contact_id), campaign_id)

    def render_email(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        campaign_id: str | None = None,
        step_id: str | None = None,
        delivery_id: str | int | None = None,
        marketing: bool = True,
        to_email: str | None = None,
        to_name: str | None = None,
    ) -> EmailMessage:
        """One whole message, or :class:`RenderError`. ``locale`` defaults to the contact's."""
        contact = context.get("contact")
        if locale is None and contact is not None:
            locale = getattr(contact, "locale", None)
        compiled = self.compile_email(template, locale, campaign_id, step_id)
        ctx = self._context(compiled.subject, context)
        contact_id = getattr(contact, "id", None) if contact is not None else None
        if ctx["unsubscribe_url"] is None and contact_id is not None:
            ctx["unsubscribe_url"] = self.unsubscribe_url(contact_id, campaign_id)
        unsubscribe = ctx["unsubscribe_url"]
        if marketing and not unsubscribe:
            raise RenderError(
                "marketing email needs a contact id to sign its unsubscribe link", path=compiled.path
            )
        budget = ACTIVE.set(self.budget)
        try:
            if compiled.combined is not None:
                ctx[SEPARATOR_NAME] = compiled.separator
                parts = split_chunks(_render_chunks(compiled.combined, ctx), compiled.separator)
                if parts is None:
                    raise RenderError("the message rendered a reserved separator", path=compiled.path)
                subject, preheader_line, page, text = parts
                preheader = preheader_line if compiled.preheader else None
            else:
                subject, preheader, page, text = self._render_parts(compiled, ctx)
        except RenderError:
            raise
        except RENDER_FAILURES as exc:
            raise self._runtime_error(compiled, exc) from None
        finally:
            ACTIVE.reset(budget)
        if "\n\n\n" in text:
            text = BLANK_RUNS.sub("\n\n", text)
        text = text.strip() + "\n"
        if marketing:
            self._require_compliance(compiled, page, str(unsubscribe), ctx)
        sender_name, sender_email = self._sender(compiled)
        reply_to = _address(compiled.reply_to)[1] if compiled.reply_to else None
        recipient = to_email or (getattr(contact, "email", None) if contact is not None else None)
        if not recipient:
            raise RenderError("no recipient address (contact.email)", path=compiled.path)
        name = to_name or (getattr(contact, "name", None) if contact is not None else None)
        headers: dict[str, str] = {}
        custom_args: dict[str, str] = {}
        if campaign_id:
            headers["X-Tidings-Campaign"] = str(campaign_id)
            custom_args["campaign_id"] = str(campaign_id)
        if step_id:
            custom_args["step_id"] = str(step_id)
        if delivery_id is not None:
            headers["X-Tidings-Delivery"] = str(delivery_id)
            custom_args["delivery_id"] = str(delivery_id)
        if marketing:
            headers["List-Unsubscribe"] = list_unsubscribe(str(unsubscribe), self.settings.unsubscribe_mailto)
            headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        return EmailMessage(
            to_email=recipient,
            to_name=name,
            subject=subject,
            html=page,
            text=text,
            from_email=sender_email,
            from_name=sender_name,
            reply_to=reply_to,
            preheader=preheader,
            headers=headers,
            locale=compiled.locale,
            categories=(str(campaign_id),) if campaign_id else (),
            custom_args=custom_args,
        )

    def _context(self, template: Template, context: Mapping[str, Any]) -> dict[str, Any]:
        """Template globals, then every context name (``None`` when absent), then the caller's values."""
        env = template.environment
        base = self._globals.get(id(env))
        if base is None:
            base = {**env.globals, **dict.fromkeys(CONTEXT_NAMES), **dict.fromkeys(MESSAGE_NAMES)}
            self._globals[id(env)] = base
        ctx = dict(base)
        ctx.update(context)
        return ctx

    def _render_parts(self, compiled: CompiledEmail, ctx: dict[str, Any]) -> tuple[str, str | None, str, str]:
        """Subject, preheader, HTML and text rendered apart (per-message MJML, or no combined template)."""
        parts = _render(compiled.headline, ctx).split(compiled.separator)  # type: ignore[arg-type]
        if len(parts) != 2:
            raise RenderError("the subject or preheader rendered a reserved separator", path=compiled.path)
        subject = one_line(parts[0])
        preheader = one_line(parts[1]) if compiled.preheader else None
        ctx["subject"] = subject
        ctx["preheader"] = preheader or ""
        if compiled.mode == "once":
            page = _render(compiled.html, ctx)
            text = _render(compiled.text, ctx) if compiled.text is not None else ""
        else:
            page, text = self._render_per_message(compiled, ctx)
        return subject, preheader, page, text

    def _render_per_message(self, compiled: CompiledEmail, ctx: dict[str, Any]) -> tuple[str, str]:
        document = _render(compiled.html, ctx)
        try:
            page, _ = self.mjml.compile_rendered(document)
        except RenderError as exc:
            raise RenderError(exc.reason, path=compiled.path) from None
        page, _ = tag_links(
            page,
            (),
            campaign_id=compiled.campaign_id,
            step_id=compiled.step_id,
            skip_prefix=self.unsubscribe_prefix,
        )
        text = _render(compiled.text, ctx) if compiled.text is not None else html_to_text(page)
        return page, text

    def _sender(self, compiled: CompiledEmail) -> tuple[str | None, str]:
        if compiled.from_header:
            name, address = _address(compiled.from_header)
            if not address or "@" not in address:
                raise RenderError(
                    f"front matter: from {compiled.from_header!r} is not an address", path=compiled.path
                )
            return (name or self.settings.from_name), address
        return self.settings.from_name, self.settings.from_email

    def _require_compliance(
        self, compiled: CompiledEmail, page: str, unsubscribe: str, ctx: dict[str, Any]
    ) -> None:
        # rfind: both sit in the footer, so searching from the end finds them soonest.
        # The signed URL is URL-safe base64: escaping changes it only when the public URL has ``&``.
        shown = page.rfind(unsubscribe) >= 0 or page.rfind(htmllib.escape(unsubscribe, quote=True)) >= 0
        if not shown:
            raise RenderError("marketing email does not show the unsubscribe link", path=compiled.path)
        shop = ctx.get("shop")
        address = str(getattr(shop, "postal_address", "") or "")
        if not address or (page.rfind(_escaped(address)) < 0 and page.rfind(address) < 0):
            raise RenderError("marketing email does not show the shop's postal address", path=compiled.path)

    def render_post(
        self,
        template: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        campaign_id: str | None = None,
    ) -> SocialPost:
        compiled = self.compile_post(template, locale)
        ctx: dict[str, Any] = dict.fromkeys(CONTEXT_NAMES)
        ctx.update(context)
        budget = ACTIVE.set(self.budget)
        try:
            text = _render(compiled.text, ctx, shared=False)
        except RENDER_FAILURES as exc:
            raise self._runtime_error(compiled, exc) from None
        finally:
            ACTIVE.reset(budget)
        text = BLANK_RUNS.sub("\n\n", text).strip()
        if not text:
            raise RenderError("the post rendered empty", path=compiled.path)
        headers = {"X-Tidings-Campaign": str(campaign_id)} if campaign_id else {}
        return SocialPost(text=text, channel="x", campaign=campaign_id, headers=headers)

    # --- errors ------------------------------------------------------------------------

    def _runtime_error(self, compiled: CompiledEmail | CompiledPost, exc: BaseException) -> RenderError:
        message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
        if isinstance(exc, RecursionError):
            message = "the template calls itself without end (a macro or recursive loop that never stops)"
        message = message.replace(f"'{Record.__module__}.Record object'", "the record")
        missing = [b for _a, b in UNDEFINED_NAME.findall(message) if b]
        if missing:
            message += suggest_attribute(missing[0])
        for needle in [a or b for a, b in UNDEFINED_NAME.findall(message)]:
            found = _find_line(compiled.files, needle)
            if found is not None:
                return RenderError(message, path=found[0], line=found[1])
        # A filter or test Jinja meets only when a branch runs (inside {% if %}): where it is written.
        found = unknown_name_at(compiled.files, message) or _failing_tag(compiled.files, exc)
        if found is not None:
            return RenderError(message, path=found[0], line=found[1])
        return RenderError(message, path=compiled.path, line=1)

    # --- caches --------------------------------------------------------------------------

    def invalidate(self, path: Path | str | None = None) -> None:
        """Drop compiled templates (all, or those made from ``path``): live reload after a save."""
        with self._lock:
            self._email_lookup.clear()
            self._syntax_ok.clear()
            if self._own_labels and (path is None or Path(path).suffix in (".yaml", ".yml")):
                self.labels = load_labels(self.templates_dir.parent)
            if path is None:
                self._emails.clear()
                self._posts.clear()
                return
            target = Path(path).resolve()
            for key, email in list(self._emails.items()):
                if any(f.resolve() == target for f in email.files):
                    del self._emails[key]
            for post_key, post in list(self._posts.items()):
                if any(f.resolve() == target for f in post.files):
                    del self._posts[post_key]


def list_unsubscribe(url: str, mailto: str | None) -> str:
    """The ``List-Unsubscribe`` value: the one-click URL, then a mailto only when the shop reads one.

    RFC 8058 one-click needs the https URL; a ``mailto:`` is optional and worth adding only
    when ``TIDINGS_UNSUBSCRIBE_MAILTO`` names a mailbox the shop processes: an address nobody
    reads turns every opt-out sent there into a lost one (and, later, a spam report). The
    subject carries the signed token, so whoever processes that mailbox can apply it.
    """
    if not mailto:
        return f"<{url}>"
    token = url.rsplit("/", 1)[-1]
    return f"<{url}>, <mailto:{mailto}?subject=unsubscribe-{token}>"


def _render(template: Template, ctx: dict[str, Any], *, shared: bool = True) -> str:
    """``Template.render`` without its per-call copy of the globals into a fresh dict.

    ``ctx`` already holds the globals (see ``Renderer._context``), so the context can be
    shared; this is what ``render`` does otherwise, traceback rewriting included, and it
    saves a quarter of a typical message's cost. Template-level ``{% set %}`` still writes
    to the render's own context, never to ``ctx``. ``shared=False`` is ``render`` itself
    (the globals merged in). The output is joined by the environment's bounded ``concat``.
    """
    context = template.new_context(ctx, shared=shared)
    try:
        return template.environment.concat(template.root_render_func(context))  # type: ignore[attr-defined]
    except Exception as exc:
        _remember_failing_line(exc)
        template.environment.handle_exception()
        raise  # handle_exception always raises; this satisfies the type checker


@lru_cache(maxsize=256)
def _address(header: str) -> tuple[str, str]:
    """``parseaddr`` costs ~10 µs and a template's ``from``/``reply_to`` is the same for every message."""
    return parseaddr(header)


@lru_cache(maxsize=256)
def _escaped(text: str) -> str:
    """The shop's postal address as autoescaped HTML shows it (one address per shop, so memoised)."""
    return htmllib.escape(text, quote=False)


def _render_chunks(template: Template, ctx: dict[str, Any]) -> list[str]:
    """Like :func:`_render`, but the output as the list of chunks the template yields."""
    context = template.new_context(ctx, shared=True)
    try:
        return checked_output(list(template.root_render_func(context)))  # type: ignore[attr-defined]
    except Exception as exc:
        _remember_failing_line(exc)
        template.environment.handle_exception()
        raise


def _deepest_line(source: str) -> int:
    """The line where brackets nest deepest (where a too-deeply-nested expression is)."""
    depth = deepest = 0
    line = found = 1
    for character in source:
        if character in "([{":
            depth += 1
            if depth > deepest:
                deepest, found = depth, line
        elif character in ")]}":
            depth = max(depth - 1, 0)
        elif character == "\n":
            line += 1
    return found


def _remember_failing_line(exc: BaseException) -> None:
    """Note on ``exc`` the innermost Jinja template frame it went through, and that frame's template line.

    Read before Jinja rewrites the traceback (which keeps the line but not which template).
    """
    found: tuple[Template, int] | None = None
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if isinstance(template, Template):
            found = (template, template.get_corresponding_lineno(tb.tb_lineno))
        tb = tb.tb_next
    if found is not None:
        exc.tidings_failing_line = found  # type: ignore[attr-defined]


def _failing_tag(files: tuple[Path, ...], exc: BaseException) -> tuple[Path, int] | None:
    """Where in the author's files the tag that raised ``exc`` is written.

    The failing template line's Jinja tags, narrowed to those matching the failed construct
    (``exc.construct``: a loop over ``i``, a ``*``), are looked up verbatim in ``files``; when
    the line holds no whole tag, the first tag in ``files`` matching the construct.
    """
    construct = getattr(exc, "construct", None)
    unsafe = UNSAFE_ATTRIBUTE.search(str(exc))
    if construct is None and unsafe is not None:
        construct = re.escape(unsafe.group(1))
    pattern = re.compile(construct) if construct else None
    where: tuple[Template, int] | None = getattr(exc, "tidings_failing_line", None)
    if where is not None:
        template, line = where
        lines = _SOURCES.get(template, "").splitlines()
        tags = JINJA_TAG.findall(lines[line - 1]) if 0 < line <= len(lines) else []
        if pattern is not None:
            tags = [tag for tag in tags if pattern.search(tag[2:-2])]
        elif len(tags) > 1:
            tags = []  # a compiled line with many tags and nothing to tell them apart: no guess
        for tag in tags:
            found = find_text(files, tag)
            if found is not None:
                return found
    if pattern is not None:
        for path, number, text in source_lines(files):
            if any(pattern.search(tag[2:-2]) for tag in JINJA_TAG.findall(text)):
                return path, number
    return None


def source_lines(files: Iterable[Path]) -> Iterator[tuple[Path, int, str]]:
    """Each line of ``files`` with its path and 1-based number (unreadable files skipped)."""
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, text in enumerate(lines, start=1):
            yield path, number, text


def find_text(files: Iterable[Path], needle: str) -> tuple[Path, int] | None:
    """The first line of ``files`` containing ``needle`` (to point a finding at the author's source)."""
    if not needle:
        return None
    return next(((path, number) for path, number, text in source_lines(files) if needle in text), None)


#: Jinja's words for a name it only rejects when compiling: ``No filter named 'shout'.``
_UNKNOWN_NAME = re.compile(r"No (filter|test) named '([^']+)'")


def unknown_name_at(files: Iterable[Path], message: str | None) -> tuple[Path, int] | None:
    """Where the authored ``files`` use the unknown filter or test ``message`` names, or None."""
    match = _UNKNOWN_NAME.search(message or "")
    if match is None:
        return None
    kind, name = match.groups()
    use = rf"\|\s*{re.escape(name)}\b" if kind == "filter" else rf"\bis\s+(not\s+)?{re.escape(name)}\b"
    pattern = re.compile(use)
    return next(((path, number) for path, number, text in source_lines(files) if pattern.search(text)), None)


def _variables(env: ImmutableSandboxedEnvironment, sources: list[str]) -> frozenset[str]:
    """Names the sources read from the context (``coupon``, ``event`` …), for the campaign checks."""
    found: set[str] = set()
    for source in sources:
        found |= meta.find_undeclared_variables(env.parse(source))
    return frozenset(found)


def _read(path: Path) -> str:
    """A template file's text; one over :data:`MAX_TEMPLATE_BYTES` (ten times Gmail's clip) is refused."""
    try:
        size = path.stat().st_size
        if size > MAX_TEMPLATE_BYTES:
            raise RenderError(
                f"the file is {size / (1 << 20):.1f} MiB; a template may be at most 1 MiB", path=path
            )
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(f"cannot read: {exc}", path=path) from None


def _mjml_error(error: RenderError, document: str, files: list[Path], path: Path, offset: int) -> RenderError:
    """MRML's error at the author's file; a Jinja tag before ``<mjml>`` (the usual cause) at its line."""
    opening = document.find("<mjml")
    before = JINJA_TAG.findall(document[: max(opening, 0)])
    if before:
        tag = before[0]
        found = find_text(files, tag)
        where, line = found if found is not None else (path, offset + 1)
        return RenderError(
            f"{one_line(tag)[:60]} comes before <mjml>: an MJML document starts with <mjml>; "
            "move the tag inside it (a {% set %} or {% if %} works anywhere in the document)",
            path=where,
            line=line,
        )
    return RenderError(error.reason, path=path, line=offset + 1)


def _prepare_document(document: str, locale: str, *, has_preheader: bool, path: Path) -> str:
    """Give the document a ``lang``, a title and a preview text when the author left them out."""
    opening = re.search(r"<mjml\b[^>]*>", document)
    if opening is None:
        raise RenderError(
            "an email template must be an <mjml> document (or extend a layout that is)", path=path, line=1
        )
    tag = opening.group(0)
    if "lang=" not in tag:
        document = document.replace(tag, tag[:-1].rstrip("/").rstrip() + f' lang="{locale}">', 1)
    additions = []
    if "<mj-title" not in document:
        additions.append("<mj-title>{{ subject }}</mj-title>")
    if has_preheader and "<mj-preview" not in document:
        additions.append("<mj-preview>{{ preheader }}</mj-preview>")
    if additions:
        if "<mj-head>" in document:
            document = document.replace("<mj-head>", "<mj-head>" + "".join(additions), 1)
        else:
            opening = re.search(r"<mjml\b[^>]*>", document)
            assert opening is not None
            document = (
                document[: opening.end()]
                + "<mj-head>"
                + "".join(additions)
                + "</mj-head>"
                + document[opening.end() :]
            )
    return document


def _find_line(files: tuple[Path, ...], needle: str) -> tuple[Path, int] | None:
    """The first line mentioning ``needle`` inside a Jinja tag, in the main file first."""
    pattern = re.compile(r"(\{\{|\{%)[^}]*\b" + re.escape(needle) + r"\b")
    return next(((path, number) for path, number, text in source_lines(files) if pattern.search(text)), None)
