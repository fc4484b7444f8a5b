"""One Jinja template per compiled email: subject, preheader, HTML and text part in a single render.

Why: rendering four templates per message repeats the fixed cost of a Jinja render four
times (a new context, resolving every name, looking up every filter, joining the output)
and evaluates the same values again in each (``days_until(cutoff.order_by)`` sits in the
subject, the HTML and the text). Measured on the shipped templates, one render of the
combined template costs about 35 % less than the subject + HTML + text renders it
replaces. The parts are joined at compile time, so per message nothing changes but the
number of renders:

* the template is parsed in the text environment (no autoescaping) and the HTML part runs
  inside ``{% autoescape true %}``: Jinja decides escaping from that evaluation context
  (output, filter blocks, macros, ``~``, ``|join``), so it renders as the HTML environment
  did. That block is also a scope of its own, so a ``{% set %}`` in the HTML is not visible
  in the text part, as when they were separate templates;
* the subject and preheader are rendered first, collapsed to one line (:func:`one_line`),
  and bound to ``subject`` / ``preheader`` for the body and the text part, as the separate
  renders did through the context;
* the parts are separated by a random token chosen at compile time, which contact data
  cannot forge. It is output from a context variable, so the render yields it as a chunk
  of its own, the very same string object: the parts are found by scanning the list of
  chunks (C-speed identity hits) and joined once each, instead of joining the whole
  message and splitting that copy again (a 12 KB email: ~5 µs of a ~50 µs render). Exactly
  three separator chunks, or the message is refused.

The HTML and a derived text part are parsed with the compiled-output comment delimiters
(see :mod:`engine.render.environment`); authored sources (front matter, ``email.txt``) use
Jinja's usual ``{# … #}``, so their comments are removed first with Jinja's own lexer
(:func:`uncomment`), which keeps whitespace control exactly as written.
"""

from __future__ import annotations

import re

from jinja2 import Environment

from engine.render.environment import COMPILED_COMMENT_START

LINE_FILTER = "tidings_line"
SEPARATOR_NAME = "tidings_part_break"  # the context variable holding the separator while rendering
COMMENT_TOKENS = frozenset({"comment_begin", "comment", "comment_end"})
# Blocks are compiled into functions of their own, outside the HTML part's ``{% autoescape %}`` scope.
BLOCK = re.compile(r"\{%[-+]?\s*block\b")


def one_line(value: object) -> str:
    """Whitespace runs (newlines included) collapsed to one space: a header value is one line."""
    return " ".join(str(value).split())


def uncomment(env: Environment, source: str) -> str:
    """``source`` without its Jinja comments, tokenised by ``env`` (the authored-source delimiters).

    The lexer has already applied ``{#-``/``-#}`` whitespace control to the text around a
    comment, so dropping the comment tokens and joining the rest renders exactly as the
    original does, now in an environment whose comment delimiters differ.
    """
    if env.comment_start_string not in source:
        return source
    tokens = env.lexer.tokeniter(source, None)
    return "".join(value for _, token, value in tokens if token not in COMMENT_TOKENS)


def combine(
    *,
    subject: str,
    preheader: str | None,
    html: str,
    text: str,
    separator: str,
) -> str | None:
    """The source of the one-render template, or ``None`` when the parts cannot be joined safely.

    ``subject``, ``preheader`` and ``text`` must already be in the compiled delimiters
    (authored ones passed through :func:`uncomment`). A part that contains the compiled
    comment delimiter or the separator would change how the whole parses or splits, and a
    ``{% block %}`` (layouts are merged before this, so none is expected) would not see the
    scope it sits in; such a template keeps the separate renders (correct, just slower).
    """
    parts = (subject, preheader or "", html, text)
    if any(
        COMPILED_COMMENT_START in part or separator in part or SEPARATOR_NAME in part or BLOCK.search(part)
        for part in parts
    ):
        return None
    brk = f"{{{{ {SEPARATOR_NAME} }}}}"
    head = f"{{% set subject %}}{{% filter {LINE_FILTER} %}}{subject}{{% endfilter %}}{{% endset %}}"
    if preheader is None:
        head += '{% set preheader = "" %}'
    else:
        head += f"{{% set preheader %}}{{% filter {LINE_FILTER} %}}{preheader}{{% endfilter %}}{{% endset %}}"
    body = f"{{% autoescape true %}}{html}{{% endautoescape %}}"
    return f"{head}{{{{ subject }}}}{brk}{{{{ preheader }}}}{brk}{body}{brk}{text}"


def split_chunks(chunks: list[str], separator: str) -> list[str] | None:
    """``[subject, preheader, html, text]`` from one render's chunks; ``None`` unless it splits in four.

    ``list.count``/``index`` compare by identity first, so the three separator chunks are
    found without comparing text; a chunk that merely equals the separator (contact data
    forging it) makes four, and the message is refused.
    """
    if chunks.count(separator) != 3:
        return None
    first = chunks.index(separator)
    second = chunks.index(separator, first + 1)
    third = chunks.index(separator, second + 1)
    return [
        "".join(chunks[:first]),
        "".join(chunks[first + 1 : second]),
        "".join(chunks[second + 1 : third]),
        "".join(chunks[third + 1 :]),
    ]
