"""The accessibility check: WCAG 2.1 level AA success criteria that decide whether a shop email can be read
by everyone, as the European Accessibility Act applies them to e-commerce since 28 June 2025
(through EN 301 549, whose web and document clauses are WCAG 2.1 AA).

A static check covers what the HTML states; it cannot judge whether an alt text is *good*,
only whether there is one and whether it is a file name. Each finding names its criterion:

==================  ==========================================================  ============
rule                fires when                                                  WCAG 2.1
==================  ==========================================================  ============
lang                ``<html>`` has no ``lang`` (or ``und``), or another         3.1.1
                    language than the message's locale
title               the document has no ``<title>``                             2.4.2
img-alt             an image without ``alt``; an ``alt`` that is a file name    1.1.1
link-name           a link with no text, no alt in it, no ``aria-label``;       2.4.4, 4.1.2
                    a link that says only "click here", "read more"…
contrast            text below 4.5:1 against its background (3:1 from 24 px,    1.4.3
                    or 18.66 px bold); text on a background image is not judged
heading-order       a heading level skipped (h1 → h3); none at all (info)      1.3.1, 2.4.6
layout-table        a table without ``role="presentation"`` (read as data)      1.3.1
==================  ==========================================================  ============

Repeats of one problem (the same colours in forty footer cells) are reported once each.
"""

from __future__ import annotations

import re

from engine.render.audit.document import Document, contrast_ratio, describe, hex_colour
from engine.render.audit.findings import Check, Finding

NORMAL_CONTRAST = 4.5
LARGE_CONTRAST = 3.0
LARGE_PX = 24.0
LARGE_BOLD_PX = 18.66
GENERIC_LINK_TEXT = frozenset(
    {
        # en
        "click here", "here", "read more", "more", "link", "click", "this", "learn more", "details",
        # ro
        "aici", "click aici", "apasă aici", "mai mult", "citește mai mult", "detalii",
        # et
        "siia", "siin", "vajuta siia", "kliki siia", "loe edasi", "rohkem", "lisaks",
    }
)  # fmt: skip
_FILE_NAME = re.compile(r"^[\w.-]+\.(png|jpe?g|gif|webp|svg)$", re.IGNORECASE)


def _wcag(criterion: str) -> str:
    return f"WCAG 2.1 {criterion}"


def _language(tag: str) -> str:
    return tag.replace("_", "-").split("-")[0].lower()


def accessibility_findings(document: Document, *, locale: str | None) -> list[Finding]:
    found: list[Finding] = []
    root = document.root
    lang = document.lang
    if not lang or lang.lower() == "und":
        found.append(
            Finding(
                Check.accessibility,
                "lang",
                "error",
                "the message does not say its language: screen readers will read it with the wrong voice",
                describe(root, text=""),
                _wcag("3.1.1"),
            )
        )
    elif locale and _language(lang) != _language(locale):
        found.append(
            Finding(
                Check.accessibility,
                "lang",
                "warning",
                f'the message says lang="{lang}" but is the {locale} version',
                describe(root, text=""),
                _wcag("3.1.1"),
            )
        )
    if not document.title:
        found.append(
            Finding(Check.accessibility, "title", "warning", "the message has no <title>", "", _wcag("2.4.2"))
        )
    for image in document.elements("img"):
        alt = image.get("alt")
        if alt is None:
            found.append(
                Finding(
                    Check.accessibility,
                    "img-alt",
                    "error",
                    'an image without alt text (use alt="" if it is only decoration)',
                    describe(image),
                    _wcag("1.1.1"),
                )
            )
        elif _FILE_NAME.match(alt.strip()):
            found.append(
                Finding(
                    Check.accessibility,
                    "img-alt",
                    "warning",
                    f"the alt text {alt!r} is a file name: say what the picture shows",
                    describe(image),
                    _wcag("1.1.1"),
                )
            )
    for anchor in document.elements("a"):
        if anchor.get("href") is None:
            continue
        text = " ".join(anchor.text_content().split())
        alts = " ".join((img.get("alt") or "").strip() for img in anchor.iter("img")).strip()
        name = text or alts or (anchor.get("aria-label") or "").strip() or (anchor.get("title") or "").strip()
        if not name:
            found.append(
                Finding(
                    Check.accessibility,
                    "link-name",
                    "error",
                    "a link with no text, no alt text in it and no aria-label: it is read out as its address",
                    describe(anchor),
                    _wcag("2.4.4, 4.1.2"),
                )
            )
        elif name.lower().strip(" .!…→»") in GENERIC_LINK_TEXT:
            found.append(
                Finding(
                    Check.accessibility,
                    "link-name",
                    "warning",
                    f"the link says only {name!r}: say where it goes",
                    describe(anchor),
                    _wcag("2.4.4"),
                )
            )
    seen_contrast: set[tuple[str, str, bool]] = set()
    for run in document.runs():
        style = run.style
        if style.hidden is not None or style.background is None:
            continue
        ratio = contrast_ratio(style.colour, style.background)
        large = style.font_px >= LARGE_PX or (style.bold and style.font_px >= LARGE_BOLD_PX)
        needed = LARGE_CONTRAST if large else NORMAL_CONTRAST
        if ratio >= needed:
            continue
        key = (hex_colour(style.colour), hex_colour(style.background), large)
        if key in seen_contrast:
            continue
        seen_contrast.add(key)
        size = "large " if large else ""
        found.append(
            Finding(
                Check.accessibility,
                "contrast",
                "error",
                f"{size}text {key[0]} on {key[1]} has a contrast of {ratio:.2f}:1, under {needed:g}:1",
                describe(run.element, text=run.text),
                _wcag("1.4.3"),
            )
        )
    levels = [
        (int(str(e.tag)[1]), e)
        for e in root.iter("h1", "h2", "h3", "h4", "h5", "h6")
        if e.text_content().strip()
    ]
    if not levels:
        found.append(
            Finding(
                Check.accessibility,
                "heading-order",
                "info",
                "no headings: screen-reader users cannot jump through the message "
                "(an mj-text can hold <h1>, <h2>)",
                "",
                _wcag("1.3.1, 2.4.6"),
            )
        )
    previous = 0
    for level, element in levels:
        if previous and level > previous + 1:
            found.append(
                Finding(
                    Check.accessibility,
                    "heading-order",
                    "warning",
                    f"heading level {level} after level {previous}: a level is skipped",
                    describe(element),
                    _wcag("1.3.1"),
                )
            )
        previous = level
    for table in document.elements("table"):
        if (table.get("role") or "").lower() not in {"presentation", "none"}:
            found.append(
                Finding(
                    Check.accessibility,
                    "layout-table",
                    "warning",
                    'a table without role="presentation": screen readers read it as a data table',
                    describe(table, text=""),
                    _wcag("1.3.1"),
                )
            )
    return found
