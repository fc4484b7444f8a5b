"""The ``label`` filter: a shop's code shown in the reader's words (:mod:`engine.workspace.labels`).

``{{ order.problem|label('problem') }}`` in a Romanian file reads the ``ro`` text of that code.
The filter is bound to one locale (one environment per locale, as for the other filters) and
reads the renderer's current labels at each call, so a reloaded ``schedules/`` applies to
templates already compiled. A lookup is two dict hits; the per-render memo of repeated
outputs treats it as pure (its value cannot change during one render).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.render.environment import TemplateValueError
from engine.workspace.labels import Labels

FILTER_NAME = "label"


def make_label_filter(labels: Callable[[], Labels], locale: str, default_locale: str) -> Callable[..., str]:
    """The ``label(kind)`` filter for templates written in ``locale``."""

    def label(value: Any, kind: str) -> str:
        if value is None:
            raise TemplateValueError(
                f"label got none for kind {kind!r} (guard it: {{% if … %}}…{{{{ value|label('{kind}') }}}})"
            )
        current = labels()
        if not current.has_kind(kind):
            known = ", ".join(sorted(current.kinds)) or "none"
            raise TemplateValueError(f"no labels of kind {kind!r} in schedules/ (kinds defined: {known})")
        return current.text(kind, str(value), locale, default_locale)

    label.__name__ = FILTER_NAME
    return label
