"""Per-locale labels for the values a shop sends as codes: ``damaged`` → "a ajuns deteriorat".

A ``labels:`` section may stand in any schedules/*.yaml file (the shipped workspace keeps them
in ``schedules/labels.yaml``, beside the cutoffs whose methods they name)::

    labels:
      problem:                      # a kind: what the codes are (order.problem)
        damaged:                    # a code, as the shop sends it
          en: arrived damaged
          ro: a ajuns deteriorat
          et: saabus kahjustatuna

Templates show a code through the ``label`` filter, ``{{ order.problem|label('problem') }}``,
in the locale of the template file used: the locale itself (``ro-RO``, then ``ro``), then the
default locale, and a code nobody labelled is shown as the shop sent it (shops may send free
text where codes are expected). Codes match without regard to case. A kind that no file
defines is an error when the template renders, so ``validate`` catches a misspelt kind.

The loader reports a kind or code defined twice, and (as a warning) a code without a text in
a locale the templates are written in: that mail would show the default locale's words.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BeforeValidator, Field

from engine.workspace.values import Name

LOCALE_PATTERN = r"^[a-z]{2,3}(?:-[A-Z]{2}|-[A-Za-z]{4})?$"


def _code(value: object) -> object:
    """YAML reads ``404:`` as a number; a code is text either way."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Code = Annotated[str, BeforeValidator(_code), Field(min_length=1, max_length=200)]
LocaleKey = Annotated[
    str, Field(pattern=LOCALE_PATTERN, description="a locale: en, ro, et, or with a region (ro-RO)")
]
LabelText = Annotated[str, Field(min_length=1, max_length=500)]
LabelsSection = dict[Name, dict[Code, dict[LocaleKey, LabelText]]]


def locale_chain(locale: str | None, default_locale: str) -> list[str]:
    """``ro-RO`` → ``["ro-RO", "ro", default]`` (without repeats)."""
    chain: list[str] = []
    for candidate in (locale, (locale or "").split("-")[0], default_locale, default_locale.split("-")[0]):
        if candidate and candidate not in chain:
            chain.append(candidate)
    return chain


@dataclass
class Labels:
    """Every ``labels:`` section of a workspace, merged: kind → code (case-folded) → locale → text."""

    kinds: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def add(self, kind: str, section: Mapping[str, Mapping[str, str]]) -> None:
        codes = self.kinds.setdefault(kind, {})
        for code, texts in section.items():
            codes[code.casefold()] = dict(texts)

    def has_kind(self, kind: str) -> bool:
        return kind in self.kinds

    def has_code(self, kind: str, code: str) -> bool:
        return code.casefold() in self.kinds.get(kind, {})

    def text(self, kind: str, code: str, locale: str | None, default_locale: str) -> str:
        """The label of ``code`` in ``locale`` (then the default locale); the code itself when unlabelled.

        ``KeyError`` for a kind no file defines.
        """
        codes = self.kinds[kind]
        texts = codes.get(str(code).casefold())
        if texts is None:
            return str(code)
        for candidate in locale_chain(locale, default_locale):
            found = texts.get(candidate)
            if found is not None:
                return found
        return str(code)


def missing_locales(texts: Mapping[str, str], locales: Iterable[str]) -> list[str]:
    """Locales among ``locales`` with no text in ``texts``, neither their own nor their language's."""
    return [loc for loc in locales if loc not in texts and loc.split("-")[0] not in texts]
