"""YAML front matter at the top of an email template (``subject``, ``preheader``, ``from``, ``reply_to``,
``locale`` — the language the file is written in, when the file name does not say it).

The front matter is split off before anything else so that the MJML body can be handed to
MRML untouched, and the number of lines it took is kept: every later error is reported at
the line of the *file*, which is what the marketer's editor shows. It is read like every
workspace YAML file (:func:`~engine.workspace.yaml_source.parse_yaml`: alias budget, a
located problem for whatever the YAML library fails on).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from engine.render.errors import RenderError
from engine.workspace.yaml_source import parse_yaml

EMAIL_KEYS = ("subject", "preheader", "from", "reply_to", "locale")


@dataclass(frozen=True, slots=True)
class FrontMatter:
    values: dict[str, str]
    body: str
    body_offset: int  # lines before the body starts (0 when there is no front matter)
    key_lines: dict[str, int]  # 1-based line of each key in the file

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, 1)


def split_front_matter(text: str, path: Path | str, *, allowed: tuple[str, ...] = EMAIL_KEYS) -> FrontMatter:
    """Split ``---\\nyaml\\n---\\n`` off ``text``; unknown keys are errors with a did-you-mean.

    Memoised on the text (a few ms of YAML parsing each; the same file is read by the compile,
    the language checks and the MJML check of one ``validate``). The result is shared: read only.
    """
    return _split(text, path, allowed)


@lru_cache(maxsize=256)
def _split(text: str, path: Path | str, allowed: tuple[str, ...]) -> FrontMatter:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return FrontMatter({}, text, 0, {})
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            break
    else:
        raise RenderError(
            "front matter starts with '---' but never ends with a '---' line", path=path, line=1
        )
    raw = "".join(lines[1:index])
    document, problems = parse_yaml(raw, Path(path))
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        # parse_yaml counts from the line after the opening '---'.
        first = errors[0]
        raise RenderError(f"front matter: {first.message}", path=path, line=first.location.line + 1)
    data = (document.data if document is not None else None) or {}
    if not isinstance(data, dict):
        raise RenderError("front matter must be a mapping of key: value lines", path=path, line=2)
    key_lines: dict[str, int] = {}
    for number, line in enumerate(lines[1:index], start=2):
        key = line.split(":", 1)[0].strip()
        if key and not line[:1].isspace() and key not in key_lines:
            key_lines[key] = number
    values: dict[str, str] = {}
    for key, value in data.items():
        key = str(key)
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of {', '.join(allowed)})"
            raise RenderError(
                f"front matter: unknown key {key!r}{hint}", path=path, line=key_lines.get(key, 2)
            )
        if value is None:
            continue
        if not isinstance(value, (str, int, float)):
            raise RenderError(f"front matter: {key} must be text", path=path, line=key_lines.get(key, 2))
        values[key] = str(value)
    return FrontMatter(values, "".join(lines[index + 1 :]), index + 1, key_lines)
