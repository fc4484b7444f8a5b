"""The link check, as Mailpit's: every ``<a href>`` and ``<img src>`` of the message, well-formed and of
an allowed scheme (http, https, mailto for links; http, https, cid and data for images).

Reachability is the image check's job (:mod:`engine.web.preview.image_probe`): a link's target
is a shop page that may sit behind a login or a bot wall, and asking every product page on each
preview would be slow and rude; an image that does not load is what the recipient sees.
"""

from __future__ import annotations

import html as htmllib
from urllib.parse import urlsplit

from engine.render.audit.document import Document, describe
from engine.render.audit.findings import Check, Finding
from engine.render.checks import link_problem

IMAGE_SCHEMES = ("http", "https", "cid", "data")
REFERENCE = "RFC 3986; mail clients open http(s) and mailto links only"


def link_findings(
    document: Document, *, marketing: bool = False, own: tuple[str, ...] = ()
) -> tuple[list[Finding], int]:
    """Findings, and how many distinct links and image sources were checked.

    In marketing mail (``marketing``) a plain ``http:`` link is a finding too, but for the engine's
    own links (``own``: the unsubscribe link, which follows ``TIDINGS_PUBLIC_URL``).
    """
    found: list[Finding] = []
    seen: set[str] = set()
    for anchor in document.elements("a"):
        href = anchor.get("href")
        if href is None:
            continue  # an anchor without href is a named anchor, not a link
        key = "a " + href
        if key in seen:
            continue
        seen.add(key)
        why = link_problem(href, marketing=marketing, own=own)
        if why:
            found.append(Finding(Check.links, "link-form", "error", why, describe(anchor), REFERENCE))
    for image in document.elements("img"):
        src = htmllib.unescape(image.get("src") or "").strip()
        key = "img " + src
        if key in seen:
            continue
        seen.add(key)
        why = image_source_problem(src)
        if why:
            found.append(Finding(Check.links, "image-source", "error", why, describe(image), REFERENCE))
    return found, len(seen)


def image_source_problem(src: str) -> str | None:
    if not src:
        return "an image has no src"
    if any(ch.isspace() for ch in src):
        return f"image source {src[:80]!r} contains spaces"
    try:
        parts = urlsplit(src)
    except ValueError:
        return f"image source {src[:80]!r} is malformed"
    if parts.scheme.lower() not in IMAGE_SCHEMES:
        return f"image source {src[:80]!r} is not an absolute http(s) address: mail clients cannot load it"
    if parts.scheme.lower() in {"http", "https"} and not parts.hostname:
        return f"image source {src[:80]!r} has no host"
    return None
