"""The plain-text part, derived once at compile time from the compiled HTML.

Inscriptis lays the HTML out as text (it honours ``display:none``, so the hidden preheader
does not leak into the text). It runs on MRML's output while the Jinja tags are still
opaque tokens, so the result is itself a Jinja template: per message only Jinja renders.

Each MJML block (``mj-text``, a button, an image) is a ``<div>`` in a table row.
Inscriptis' default profile puts no margin after a ``div``, which ran an email's
paragraphs together line after line; the profile used here ends each ``div`` with a blank
line, the paragraph break a reader of the text part expects. MJML's nested layout tables
leave deep indentation and runs of blank lines; those are normalised here, links are
written ``text (url)`` as mail clients show them (an address or phone number that is its own
link once), and image-only links (a logo) are left out.
"""

from __future__ import annotations

import copy
import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from inscriptis.model.css import Display
from inscriptis.model.html_element import HtmlElement

from engine.render.mjml import restore

LINK = re.compile(r"\[([^\[\]]*)\]\(([^()\s]*)\)")
BLANKS = re.compile(r"\n{3,}")

_CSS = copy.deepcopy(CSS_PROFILES["strict"])
_CSS["div"] = HtmlElement(display=Display.block, margin_after=1)
_CONFIG = ParserConfig(css=_CSS, display_links=True)


def _link(match: re.Match[str], tags: tuple[str, ...] = ()) -> str:
    label = " ".join(match.group(1).split())
    url = match.group(2)
    if not url or not label:
        return label  # an image-only link (a logo): nothing readable to show in text
    if not label or label == url:
        return url
    scheme, _, target = restore(url, tags).partition(":")
    if scheme.lower() in ("mailto", "tel") and _same(target, restore(label, tags)):
        return label  # "help@shop.example.com", not "help@shop.example.com (mailto:help@shop.example.com)"
    return f"{label} ({url})"


def _same(target: str, label: str) -> bool:
    """Does the label already say where a ``mailto:``/``tel:`` link goes?

    ``+372 600 1234`` for ``tel:+3726001234``; and a label that is itself a value from the
    context (``{{ shop.support.phone }}`` for ``tel:{{ … }}``): such a label is the address or
    number, written for people.
    """
    if target.replace(" ", "") == label.replace(" ", ""):
        return True
    return target.startswith("{{") and label.startswith("{{") and label.endswith("}}")


def html_to_text(page: str, tags: tuple[str, ...] = ()) -> str:
    """Readable text for ``page``; blocks separated by one blank line, no trailing spaces.

    ``tags`` are the Jinja tags behind the page's tokens (:mod:`engine.render.mjml`), so that a
    ``mailto:{{ address }}`` link labelled ``{{ address }}`` is recognised as its own label.
    """
    raw = get_text(page, _CONFIG)
    text = LINK.sub(lambda match: _link(match, tags), raw.replace("\r", ""))
    lines = [line.strip() for line in text.split("\n")]
    text = BLANKS.sub("\n\n", "\n".join(lines)).strip()
    return text + "\n"
