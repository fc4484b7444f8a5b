"""Order-by dates for the shop's website, from the one schedule the emails and X posts read.

``GET /cutoffs`` lists every row of ``shipping_cutoffs`` (``Schedules.cutoff_rows()``) as JSON,
``order_by`` in the row's own zone with its offset, and whether it has ``passed`` by the
injected clock. ``GET /cutoffs/banner?country=EE&locale=et`` is a small HTML fragment for a
shop's pages: the same dates in the words and Babel patterns of the order-by reminder, the
shipping methods through the workspace's ``labels: method``.

What a website embedding it can rely on:

* the fragment is autoescaped (Jinja), has no script and no external resource, and is served
  with ``Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'`` in case it
  is opened on its own;
* ``Cache-Control: public, max-age=N`` where N never reaches past the next cutoff, so no
  cache shows an open deadline after it has passed (``MAX_AGE`` at most, ``PASSED_MAX_AGE``
  once every row has passed);
* ``Access-Control-Allow-Origin: *`` on both, so a page on another origin can fetch them;
* 400 for a malformed ``country`` or ``locale``, 404 for a country without cutoffs; a locale
  without banner words falls back to the default locale's (``Content-Language`` says which).

The schedules are read from the workspace and re-read when a file in schedules/ changes
(a ``stat`` per request; measured well under a millisecond for a few files); a broken edit
keeps the last good schedules and is logged, as the daemon's reload does.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from babel.dates import get_timezone_name
from jinja2 import Environment

from engine.render.environment import formatters
from engine.render.locales import normalise
from engine.web.cutoff_text import WORDS
from engine.web.unsubscribe_text import pick_language
from engine.workspace.loader import YAML_SUFFIXES, load_schedules
from engine.workspace.schedules import Cutoff, Schedules

log = logging.getLogger(__name__)

MAX_AGE = 600  # seconds: an edited schedule reaches every cache within ten minutes
PASSED_MAX_AGE = 3600
COUNTRY = re.compile(r"^[A-Za-z]{2}$")
LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8}){0,2}$")
SchedulesSource = Callable[[], Schedules]


class SchedulesFiles:
    """A workspace's schedules/, re-read when a file there is added, removed or changed."""

    def __init__(self, root: Path, default_locale: str = "en") -> None:
        self.folder = Path(root) / "schedules"
        self.root = Path(root)
        self.default_locale = default_locale
        self._lock = threading.Lock()
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._schedules = Schedules()

    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        if not self.folder.is_dir():
            return ()
        found = []
        for path in sorted(self.folder.iterdir()):
            if path.suffix in YAML_SUFFIXES:
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((path.name, stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def __call__(self) -> Schedules:
        stamp = self._stamp()
        with self._lock:
            if stamp != self._seen:
                schedules, problems = load_schedules(self.root, default_locale=self.default_locale)
                errors = [p for p in problems if p.severity == "error"]
                if errors and self._seen is not None:
                    log.warning(
                        "schedules/ has %d problem(s), keeping the last good ones: %s", len(errors), errors[0]
                    )
                else:
                    for problem in errors:
                        log.warning("schedules/: %s", problem)
                    self._schedules = schedules
                self._seen = stamp
            return self._schedules


class BadRequest(ValueError):
    """A malformed query parameter (400)."""


class NotFound(LookupError):
    """Nothing to show for that country (404)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A body with the headers every cutoff response carries."""

    body: Any
    max_age: int
    language: str | None = None


def _country(value: str | None, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise BadRequest("country is required, a two-letter code such as EE")
        return None
    if not COUNTRY.match(value):
        raise BadRequest("country must be a two-letter code such as EE")
    return value.upper()


def _max_age(rows: list[Cutoff], now: datetime) -> int:
    """Seconds a cache may keep the answer: never past the next cutoff still open."""
    upcoming = [row.order_by for row in rows if row.order_by > now]
    if not upcoming:
        return PASSED_MAX_AGE
    until = (min(upcoming) - now) / timedelta(seconds=1)
    return max(0, min(MAX_AGE, int(until)))


def _rows(schedules: Schedules, country: str | None) -> list[Cutoff]:
    rows = schedules.cutoff_rows()
    if country is not None:
        rows = [row for row in rows if row.country == country]
        if not rows:
            known = ", ".join(sorted({row.country for row in schedules.cutoff_rows()})) or "none"
            raise NotFound(f"no shipping cutoffs for {country} (countries with cutoffs: {known})")
    return rows


def cutoffs_json(schedules: Schedules, now: datetime, country: str | None = None) -> Answer:
    """Every cutoff row (or one country's), as the website's JavaScript reads them."""
    rows = _rows(schedules, _country(country, required=False))
    return Answer(
        {
            "now": now.isoformat(),
            "deliver_before": rows[0].deliver_before.isoformat() if rows else None,
            "default_method": schedules.default_method,
            "cutoffs": [
                {
                    "country": row.country,
                    "method": row.method,
                    "carrier": row.carrier,
                    "order_by": row.order_by.isoformat(),
                    "timezone": row.zone.key,
                    "deliver_before": row.deliver_before.isoformat(),
                    "passed": row.order_by <= now,
                }
                for row in rows
            ],
        },
        _max_age(rows, now),
    )


def banner_html(
    pages: Environment,
    schedules: Schedules,
    now: datetime,
    *,
    country: str | None,
    locale: str | None,
    default_locale: str,
) -> Answer:
    """The localised fragment for one country's cutoffs."""
    if locale is not None and locale != "" and not LOCALE.match(locale):
        raise BadRequest("locale must look like en, ro or et-EE")
    rows = _rows(schedules, _country(country, required=True))
    language = pick_language(normalise(locale) if locale else None, default_locale, WORDS)
    words = WORDS[language]
    zone_names = list(dict.fromkeys(row.zone.key for row in rows))
    view = []
    for row in rows:
        fmt = formatters(language, row.zone.key)
        method = (
            schedules.labels.text("method", row.method, language, default_locale)
            if schedules.labels.has_kind("method")
            else row.method
        )
        view.append(
            {
                "method": row.method,
                "method_label": method,
                "carrier": row.carrier,
                "iso": row.order_by.isoformat(),
                "shown": fmt.datetime_in(row.order_by, words.order_by, row.zone.key),
                "passed": row.order_by <= now,
            }
        )
    first = formatters(language, rows[0].zone.key)
    html = pages.get_template("public/cutoff_banner.html").render(
        lang=language,
        country=rows[0].country,
        title=words.title.format(
            deliver_before=first.datetime_in(rows[0].deliver_before, words.deliver_before, rows[0].zone.key)
        ),
        rows=view,
        passed_word=words.passed,
        zones=[
            words.zone.format(zone=get_timezone_name(name, "long", locale=language, zone_variant="generic"))
            for name in zone_names
        ],
    )
    return Answer(html, _max_age(rows, now), language)
