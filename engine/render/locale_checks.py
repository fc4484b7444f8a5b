"""Which language each contact gets, checked before anyone gets the wrong one.

Three checks on the campaigns of a workspace, each at the campaign line it concerns:

* **A/B variants cover the same locales.** Contacts are split between the variants whatever
  their language; when ``holiday-greeting`` has ``email.et.mjml`` and ``holiday-greeting-b`` has
  not, Estonians in variant B get the default file in another language while variant A speaks
  Estonian. An error naming the missing file.
* **A forced language has its file.** ``locale: ro`` on a campaign or step sends in Romanian; a
  template without a Romanian file would send its default file instead. An error.
* **Nobody falls back to a default file in a third language.** ``email.mjml`` is the default
  locale's (``TIDINGS_DEFAULT_LOCALE``), unless its front matter says otherwise (``locale: ro``:
  a shop that writes only in Romanian). A contact whose language has no file of its own gets the
  default file; when that file is in neither their language nor the default locale's, they get
  a language chosen by accident. A warning per language reached.

How the language of a default file is known: its front matter's ``locale`` key says it (the
renderer then formats dates and money, and picks partials, in that language). When it says
nothing, a file whose text names months or weekdays of exactly one of the workspace's other
languages (CLDR's names, through Babel), and none of the default locale's, is taken to be in
that language, and the warning says to declare it. The names are what goes wrong first (an
English date inside Romanian text), and no word list is kept by hand.

"The languages a campaign reaches" are the contacts' own when ``validate`` has a store
(:mod:`engine.runtime.rehearsal` counts them per campaign); without one, every language the
workspace has a template file for, and the default locale.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import get_day_names, get_month_names

from engine.errors import Problem, SourceLocation
from engine.render.errors import RenderError
from engine.render.renderer import Renderer
from engine.workspace.models import Campaign, SendStep
from engine.workspace.values import normalise_locale

_LOCALE_SUFFIX = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
_WORD = re.compile(r"[^\W\d_]{4,}")
_MARKUP = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}|<[^>]*>", re.DOTALL)


def language(locale: str | None) -> str:
    code = normalise_locale(locale)
    return code.split("-", 1)[0] if code else ""


def language_name(locale: str) -> str:
    try:
        return str(Locale.parse(locale.replace("-", "_")).get_display_name("en"))
    except (UnknownLocaleError, ValueError):
        return locale


@lru_cache(maxsize=32)
def _calendar_words(code: str) -> frozenset[str]:
    try:
        locale = Locale.parse(code)
    except (UnknownLocaleError, ValueError):
        return frozenset()
    names = [*get_month_names("wide", locale=locale).values(), *get_day_names("wide", locale=locale).values()]
    return frozenset(name.casefold() for name in names if len(name) >= 4)


def detected_language(text: str, candidates: Iterable[str], default: str) -> tuple[str, list[str]] | None:
    """The one language among ``candidates`` whose month or day names ``text`` uses, when the default's
    are absent; with the names found. None when the text says nothing clear."""
    words = {word.casefold() for word in _WORD.findall(_MARKUP.sub(" ", text))}
    languages = sorted({language(code) for code in candidates} | {language(default)})
    own = {code: _calendar_words(code) for code in languages}
    shared = {word for code in languages for word in own[code] if sum(word in own[c] for c in languages) > 1}
    hits = {code: sorted((own[code] - shared) & words) for code in languages}
    if hits.get(language(default)):
        return None
    found = [(code, names) for code, names in hits.items() if names]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class _StepTemplate:
    campaign: Campaign
    step: SendStep
    index: int | None  # the variant's index, None for a plain send
    template: str

    def location(self) -> SourceLocation:
        loc = _step_loc(self.step.path)
        if self.index is None:
            return self.campaign.source.at(*loc, "send", "template")
        return self.campaign.source.at(*loc, "send", "variants", self.index, "template")

    def locale_location(self) -> SourceLocation:
        if self.step.locale is not None:
            return self.campaign.source.at(*_step_loc(self.step.path), "locale")
        return self.campaign.source.at("locale")


def _step_loc(path: str) -> tuple[str | int, ...]:
    loc: list[str | int] = ["steps"]
    for part in path.split("."):
        loc.append(int(part) if part.isdigit() else part)
    return tuple(loc)


def _sends(campaign: Campaign) -> list[list[_StepTemplate]]:
    found: list[list[_StepTemplate]] = []
    for step in campaign.iter_steps():
        if not isinstance(step, SendStep):
            continue
        if step.send.variants is not None:
            found.append(
                [_StepTemplate(campaign, step, i, v.template) for i, v in enumerate(step.send.variants)]
            )
        else:
            found.append([_StepTemplate(campaign, step, None, step.send.template or "")])
    return found


class LocaleChecks:
    """The three checks of the module docstring over one workspace's campaigns."""

    def __init__(self, renderer: Renderer, campaigns: Iterable[Campaign]) -> None:
        self.renderer = renderer
        self.campaigns = list(campaigns)
        self.default = renderer.default_locale
        self._files: dict[str, dict[str, Path]] = {}
        self._locales: list[str] | None = None

    def files(self, template: str) -> dict[str, Path]:
        """The template's email files by the locale their name says (``{}`` for posts and broken ones)."""
        if template not in self._files:
            try:
                found = (
                    {locale: path for path, locale in self.renderer.locale_files(template)}
                    if self.renderer.kind(template) == "email"
                    else {}
                )
            except RenderError:
                found = {}
            self._files[template] = found
        return self._files[template]

    def workspace_locales(self) -> list[str]:
        """Every language the workspace has a file in (templates, layouts, partials), and the default."""
        if self._locales is None:
            codes = {self.default}
            for template in self.renderer.templates():
                codes.update(self.files(template))
            for path in self.renderer.templates_dir.glob("_*/*.*.*"):
                code = normalise_locale(path.name.split(".")[-2])
                if code is not None and _LOCALE_SUFFIX.match(code):
                    codes.add(code)
            self._locales = sorted(codes)
        return self._locales

    def run(self, reached: Mapping[str, Mapping[str, int]] | None = None) -> list[Problem]:
        """``reached``: per campaign id, the contact locales it reaches and how many (from the store)."""
        problems: list[Problem] = []
        fallback_seen: set[tuple[str, str, str]] = set()
        for campaign in self.campaigns:
            audience = (
                dict(reached[campaign.key])
                if reached is not None and campaign.key in reached
                else dict.fromkeys(self.workspace_locales(), 0)
            )
            for send in _sends(campaign):
                problems.extend(self._variants(send))
                for item in send:
                    if not self.files(item.template):
                        continue
                    forced = campaign.forced_locales(item.step)
                    problems.extend(self._forced(item, forced))
                    problems.extend(self._fallbacks(item, forced, audience, fallback_seen))
        return problems

    def _variants(self, send: list[_StepTemplate]) -> list[Problem]:
        if len(send) < 2:
            return []
        by_template = {item.template: set(self.files(item.template)) for item in send}
        problems = []
        for item in send:
            own = by_template[item.template]
            if not own:
                continue
            for other in send:
                for code in sorted(by_template[other.template] - own):
                    missing = self.renderer.templates_dir / item.template / f"email.{code}.mjml"
                    problems.append(
                        Problem(
                            item.location(),
                            f"A/B variants cover different locales: {missing} is missing but "
                            f"{other.template!r} has email.{code}.mjml, so {language_name(code)} contacts "
                            f"in variant {item.template!r} get its default file while the other variant "
                            f"speaks their language; add the file (or remove the other's)",
                        )
                    )
                break  # one comparison (with the first variant that has more) names every missing file
        return problems

    def _written_in(self, template: str, code: str | None) -> tuple[Path, str, str | None]:
        """The file a contact in ``code`` gets, its language, and why (None when declared or by name)."""
        path, written = self.renderer.file_locale(template, code)
        if path.name == "email.mjml" and written == self.default:
            detected = self._detected(path)
            if detected is not None:
                found, names = detected
                return path, found, f"it names {', '.join(names[:3])}"
        return path, written, None

    @lru_cache(maxsize=256)  # noqa: B019 — one LocaleChecks per validate run
    def _detected(self, path: Path) -> tuple[str, list[str]] | None:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError):
            return None
        return detected_language(text, self.workspace_locales(), self.default)

    def _forced(self, item: _StepTemplate, forced: list[str] | None) -> list[Problem]:
        problems: list[Problem] = []
        for code in forced or []:
            try:
                path, written, _why = self._written_in(item.template, code)
            except RenderError:
                continue
            if language(written) != language(code):
                problems.append(
                    Problem(
                        item.locale_location(),
                        f"locale {code} is forced, but template {item.template!r} has no "
                        f"email.{code}.mjml: it would send {path.name}, written in {language_name(written)}",
                    )
                )
        return problems

    def _fallbacks(
        self,
        item: _StepTemplate,
        forced: list[str] | None,
        audience: Mapping[str, int],
        seen: set[tuple[str, str, str]],
    ) -> list[Problem]:
        problems: list[Problem] = []
        sent_in: dict[str, int] = {}
        for code, count in audience.items():
            if forced:
                code = code if language(code) in {language(f) for f in forced} else forced[0]
            sent_in[code or self.default] = sent_in.get(code or self.default, 0) + count
        for code, count in sorted(sent_in.items()):
            try:
                path, written, why = self._written_in(item.template, code)
            except RenderError:
                continue
            if why is not None and (item.template, "") not in {(t, c) for _k, t, c in seen}:
                seen.add((item.campaign.key, item.template, ""))
                problems.append(
                    Problem(
                        item.location(),
                        f"{path} looks written in {language_name(written)} ({why}) but, as the default "
                        f"file, is formatted in {language_name(self.default)} (dates, money, footer): "
                        f"declare 'locale: {written}' in its front matter",
                        severity="warning",
                    )
                )
            if path.name != "email.mjml" or language(written) in (language(code), language(self.default)):
                continue
            key = (item.campaign.key, item.template, language(code))
            if key in seen:
                continue
            seen.add(key)
            who = f"{count} contacts" if count else "contacts"
            how = (
                f"looks written in {language_name(written)} ({why}); declare it with 'locale: {written}' "
                "in its front matter, or "
                if why
                else f"is written in {language_name(written)}; "
            )
            problems.append(
                Problem(
                    item.location(),
                    f"{who} with locale {code} get {path} (the default file), which {how}add "
                    f"email.{language(code)}.mjml or force the campaign's language with 'locale:'",
                    severity="warning",
                )
            )
        return problems


__all__ = ["LocaleChecks", "detected_language", "language", "language_name"]
