"""The spam check: SpamAssassin-style heuristics on the message as sent, each naming the rule it mirrors.

No maintained Python library scores a message without a running SpamAssassin (``spamd``),
which a preview cannot assume; so these are the body and subject rules that shop mail
trips most often, evaluated on the style-resolved document (:mod:`.document`):

==================  =====================================  ==========================================
rule                fires when                              SpamAssassin's counterpart
==================  =====================================  ==========================================
hidden-text         text hidden by CSS, other than the      hidden-text rules (``T_HTML_HIDDEN…``)
                    preheader MJML hides on purpose
low-contrast-text   visible text at a contrast below 1.5:1  ``HTML_FONT_LOW_CONTRAST``
tiny-text           visible text under 6 px                 ``HTML_FONT_SIZE_TINY``
image-only          images and under 400 characters of text ``HTML_IMAGE_ONLY_04``…``_32``
image-ratio         under 0.2% text characters per px² of   ``HTML_IMAGE_RATIO_02``
                    image (a picture without a ``height``
                    counts as 2:1, as email banners are)
subject-caps        a subject in capitals (10+ letters)    ``SUBJ_ALL_CAPS``
subject-punctuation "!!" or three "!" in the subject       ``SUBJ_EXCESS_PUNCT`` style rules
url-shortener       a link through a public URL shortener  ``URI_…`` shortener lists
link-text-host      a link whose text shows another host    ``URI_TEXT_MISMATCH`` style (phishing)
no-text-part        no plain-text alternative              ``MIME_HTML_ONLY``
gmail-clip          HTML over Gmail's ~102 KB clip          (Gmail, not SpamAssassin)
==================  =====================================  ==========================================
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from engine.message import EmailMessage
from engine.render.audit.document import Document, contrast_ratio, describe, hex_colour
from engine.render.audit.findings import Check, Finding

GMAIL_CLIP_BYTES = 102 * 1024
SHORTENERS = frozenset(
    {
        "bit.ly",
        "tinyurl.com",
        "t.co",
        "goo.gl",
        "ow.ly",
        "is.gd",
        "buff.ly",
        "rebrand.ly",
        "cutt.ly",
        "shorturl.at",
    }
)
IMAGE_ONLY_CHARS = 400
IMAGE_RATIO = 0.002
INVISIBLE_CONTRAST = 1.5
TINY_PX = 6.0
_HOST_TEXT = re.compile(r"^(?:https?://)?((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[/:?#]\S*)?$", re.IGNORECASE)
_FILLER = re.compile(r"^[\s\u00a0\u200b\u200c\u034f\u2007]*$")


def _size(value: str | None) -> float | None:
    if value is None:
        return None
    digits = value.strip().lower().removesuffix("px")
    try:
        return float(digits)
    except ValueError:
        return None


def _is_preheader(text: str, preheader: str) -> bool:
    if _FILLER.match(text):
        return True
    return bool(preheader) and text.startswith(" ".join(preheader.split())[:40])


def spam_findings(document: Document, message: EmailMessage) -> list[Finding]:
    found: list[Finding] = []
    runs = document.runs()
    preheader = message.preheader or ""
    for run in runs:
        style = run.style
        if style.hidden is not None:
            if not _is_preheader(run.text, preheader):
                found.append(
                    Finding(
                        Check.spam,
                        "hidden-text",
                        "warning",
                        f"text hidden by {style.hidden}: filters read hidden text as a trick",
                        describe(run.element, text=run.text),
                        "SpamAssassin hidden-text rules",
                    )
                )
            continue
        if style.background is not None:
            ratio = contrast_ratio(style.colour, style.background)
            if ratio < INVISIBLE_CONTRAST:
                found.append(
                    Finding(
                        Check.spam,
                        "low-contrast-text",
                        "warning",
                        f"text nearly invisible: {hex_colour(style.colour)} on "
                        f"{hex_colour(style.background)} ({ratio:.2f}:1)",
                        describe(run.element, text=run.text),
                        "SpamAssassin HTML_FONT_LOW_CONTRAST",
                    )
                )
        if 0 < style.font_px < TINY_PX:
            found.append(
                Finding(
                    Check.spam,
                    "tiny-text",
                    "warning",
                    f"text at {style.font_px:g} px: too small to read, and filters notice",
                    describe(run.element, text=run.text),
                    "SpamAssassin HTML_FONT_SIZE_TINY",
                )
            )
    text_chars = len(document.visible_text())
    images = document.elements("img")
    area = 0.0
    for image in images:
        width = _size(image.get("width")) or 0.0
        height = _size(image.get("height"))
        area += width * (height if height is not None else width / 2)
    if images and text_chars < IMAGE_ONLY_CHARS:
        found.append(
            Finding(
                Check.spam,
                "image-only",
                "warning",
                f"{len(images)} image(s) and only {text_chars} characters of text: say it in words too",
                "",
                "SpamAssassin HTML_IMAGE_ONLY",
            )
        )
    elif area and text_chars / area < IMAGE_RATIO:
        found.append(
            Finding(
                Check.spam,
                "image-ratio",
                "warning",
                f"{text_chars} characters of text to {area:,.0f} px² of images "
                f"({text_chars / area:.2%} per px², under {IMAGE_RATIO:.1%})",
                "",
                "SpamAssassin HTML_IMAGE_RATIO_02",
            )
        )
    subject = message.subject
    letters = [ch for ch in subject if ch.isalpha()]
    if len(letters) >= 10 and all(ch.isupper() for ch in letters):
        found.append(
            Finding(
                Check.spam,
                "subject-caps",
                "warning",
                "the subject is in capitals",
                subject,
                "SpamAssassin SUBJ_ALL_CAPS",
            )
        )
    if "!!" in subject or subject.count("!") >= 3:
        found.append(
            Finding(
                Check.spam,
                "subject-punctuation",
                "warning",
                "the subject shouts with exclamation marks",
                subject,
                "SpamAssassin SUBJ_EXCESS_PUNCT",
            )
        )
    for anchor in document.elements("a"):
        href = (anchor.get("href") or "").strip()
        host = (urlsplit(href).hostname or "").lower() if href.lower().startswith("http") else ""
        if host in SHORTENERS:
            found.append(
                Finding(
                    Check.spam,
                    "url-shortener",
                    "warning",
                    f"a link through the shortener {host}: filters distrust them; link to the shop itself",
                    describe(anchor),
                    "SpamAssassin URI shortener rules",
                )
            )
        shown = _HOST_TEXT.match(" ".join(anchor.text_content().split()))
        if host and shown and not _same_site(shown.group(1).lower(), host):
            found.append(
                Finding(
                    Check.spam,
                    "link-text-host",
                    "warning",
                    f"the link reads {shown.group(1)} but goes to {host}: a phishing pattern to filters",
                    describe(anchor),
                    "SpamAssassin URI_TEXT_MISMATCH-style rules",
                )
            )
    if not (message.text or "").strip():
        found.append(
            Finding(
                Check.spam, "no-text-part", "warning", "no plain-text part", "", "SpamAssassin MIME_HTML_ONLY"
            )
        )
    if message.size > GMAIL_CLIP_BYTES:
        found.append(
            Finding(
                Check.spam,
                "gmail-clip",
                "warning",
                f"the HTML is {message.size / 1024:.0f} KB; Gmail clips messages over ~102 KB "
                "(and the unsubscribe link with them)",
                "",
                "Gmail",
            )
        )
    return found


def _same_site(shown: str, host: str) -> bool:
    shown, host = shown.removeprefix("www."), host.removeprefix("www.")
    return shown == host or host.endswith("." + shown) or shown.endswith("." + host)
