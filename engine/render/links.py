"""UTM tagging of links, done at compile time on the HTML with its Jinja still in place.

Static ``http(s)`` links are rewritten once. A link whose ``href`` is (partly) Jinja —
``href="{{ shop.url }}/gifts"`` — cannot be parsed before it is rendered, so it is wrapped in
``{% filter tidings_utm(…) %}…{% endfilter %}``: the tagging then runs per message on the
rendered URL, for those links only. Links to the unsubscribe URL, ``mailto:`` and ``tel:`` links and
links that already carry ``utm_*`` parameters are left alone (a marketer's own UTM wins).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from markupsafe import Markup

from engine.render.mjml import TOKEN, token

HREF = re.compile(r'(<a\b[^>]*?\shref=")([^"]*)(")', re.IGNORECASE | re.DOTALL)
UNSUBSCRIBE_EXPR = re.compile(r"^\{\{-?\s*unsubscribe_url\s*-?\}\}$")
FILTER_NAME = "tidings_utm"


def utm_params(campaign_id: str | None, step_id: str | None) -> list[tuple[str, str]]:
    params = [("utm_source", "tidings"), ("utm_medium", "email")]
    if campaign_id:
        params.append(("utm_campaign", str(campaign_id)))
    if step_id:
        params.append(("utm_content", str(step_id)))
    return params


def tag_url(url: str, params: list[tuple[str, str]], skip_prefix: str | None = None) -> str:
    """``url`` with ``params`` appended, when it is an http(s) link that should be tagged."""
    stripped = url.strip()
    if skip_prefix and stripped.startswith(skip_prefix):
        return url
    try:
        parts = urlsplit(stripped)
    except ValueError:
        return url
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key.lower().startswith("utm_") for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, *params])))


def make_utm_filter(skip_prefix: str | None, memo_size: int = 4096) -> Callable[..., str]:
    """The per-message filter for links whose href is Jinja; keeps HTML escaping intact.

    Most such links render the same for every recipient (``{{ shop.url }}/gifts``), so
    results are memoised; the memo is bounded and simply starts over when full.
    """
    # Keyed by the value's type too: a Markup and a str with the same text are tagged differently.
    memo: dict[tuple[type, str, str | None, str | None], str] = {}  # Markup values for HTML

    def tidings_utm(value: str, campaign_id: str | None = None, step_id: str | None = None) -> str:
        if not isinstance(value, str):  # only a template's own misuse; keep it hashable
            value = str(value)
        key = (type(value), value, campaign_id, step_id)
        hit = memo.get(key)
        if hit is None:
            params = utm_params(campaign_id, step_id)
            text = str(value)
            if isinstance(value, Markup):
                hit = Markup(html.escape(tag_url(html.unescape(text), params, skip_prefix), quote=True))
            else:
                hit = tag_url(text, params, skip_prefix)
            if len(memo) >= memo_size:
                memo.clear()
            memo[key] = hit
        return hit

    return tidings_utm


def _literal(value: str | None) -> str:
    """A Jinja literal for a compile-time constant (JSON strings are valid Jinja strings)."""
    return "none" if value is None else json.dumps(str(value))


def tag_links(
    page: str,
    tags: tuple[str, ...],
    *,
    campaign_id: str | None,
    step_id: str | None,
    skip_prefix: str | None,
) -> tuple[str, tuple[str, ...]]:
    """Tag every link in ``page`` (MRML output with Jinja tokens); returns the page and the grown tag list."""
    params = utm_params(campaign_id, step_id)
    new_tags = list(tags)
    call = f"{{% filter {FILTER_NAME}({_literal(campaign_id)}, {_literal(step_id)}) %}}"

    def rewrite(match: re.Match[str]) -> str:
        value = match.group(2)
        if TOKEN.search(value):
            restored = TOKEN.sub(lambda m: tags[int(m.group(1))], value).strip()
            if UNSUBSCRIBE_EXPR.match(restored) or restored.lower().startswith(("mailto:", "tel:")):
                return match.group(0)
            new_tags.append(call)
            new_tags.append("{% endfilter %}")
            wrapped = f"{token(len(new_tags) - 2)}{value}{token(len(new_tags) - 1)}"
            return f"{match.group(1)}{wrapped}{match.group(3)}"
        tagged = tag_url(html.unescape(value), params, skip_prefix)
        return f"{match.group(1)}{html.escape(tagged, quote=True)}{match.group(3)}"

    return HREF.sub(rewrite, page), tuple(new_tags)
