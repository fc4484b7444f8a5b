"""The plain-text part, derived once at compile time from the compiled HTML.

Inscriptis lays the HTML out as text (it honours ``display:none``, so the hidden preheader
does not leak into the text). It runs on MRML's output while the Jinja tags are still
opaque tokens, so the result is itself a Jinja template: per message only Jinja renders.

Each MJML block (``mj-text``, a button, an image) is a ``<div>`` in a table row.
Inscriptis' default profile puts no margin after a ``div``, which ran an email's
paragraphs together line after line; the profile used here ends each ``div`` with a blank
line, the paragraph break a reader of the text part expects. MJML's nested layout tables
leave deep indentation and runs of blank lines; those are normalised here, links are
written ``text (url)`` as mail clients show them, and image-only links (a logo) are left out.
"""

from __future__ import annotations

import copy
import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from inscriptis.model.css import Display
from inscriptis.model.html_element import HtmlElement

LINK = re.compile(r"\[([^\[\]]*)\]\(([^()\s]*)\)")
BLANKS = re.compile(r"\n{3,}")

_CSS = copy.deepcopy(CSS_PROFILES["strict"])
_CSS["div"] = HtmlElement(display=Display.block, margin_after=1)
_CONFIG = ParserConfig(css=_CSS, display_links=True)


def _link(match: re.Match[str]) -> str:
    label = " ".join(match.group(1).split())
    url = match.group(2)
    if not url or not label:
        return label  # an image-only link (a logo): nothing readable to show in text
    if not label or label == url:
        return url
    return f"{label} ({url})"


def html_to_text(page: str) -> str:
    """Readable text for ``page``; blocks separated by one blank line, no trailing spaces."""
    raw = get_text(page, _CONFIG)
    text = LINK.sub(_link, raw.replace("\r", ""))
    lines = [line.strip() for line in text.split("\n")]
    text = BLANKS.sub("\n\n", "\n".join(lines)).strip()
    return text + "\n"
