"""The template index: which templates exist under templates/ and in which locales.

Only the file layout is read here (DESIGN.md "Templates"); compiling and rendering belong to
``engine.render``. ``_layouts`` and ``_partials`` (and any folder starting with ``_`` or ``.``)
hold shared parts, not templates.

    templates/NAME/email.mjml        default locale      → TemplateInfo.email[""]
    templates/NAME/email.ro.mjml     Romanian            → TemplateInfo.email["ro"]
    templates/NAME/email.txt         plain-text part     → TemplateInfo.text[""]
    templates/NAME/post.txt          X post              → TemplateInfo.post[""]
    templates/NAME/post.et.txt       Estonian post       → TemplateInfo.post["et"]
    templates/NAME/sample.yaml       sample context      → TemplateInfo.sample
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT = ""  # the key of the default-locale file
_LOCALE = r"[a-z]{2,3}(?:[-_][A-Za-z]{2,4})?"
_FILES = {
    "email": re.compile(rf"^email(?:\.({_LOCALE}))?\.mjml$"),
    "text": re.compile(rf"^email(?:\.({_LOCALE}))?\.txt$"),
    "post": re.compile(rf"^post(?:\.({_LOCALE}))?\.txt$"),
}


@dataclass
class TemplateInfo:
    """One template folder. Locale maps are keyed by locale code, ``""`` for the default file."""

    name: str
    directory: Path
    email: dict[str, Path] = field(default_factory=dict)
    text: dict[str, Path] = field(default_factory=dict)
    post: dict[str, Path] = field(default_factory=dict)
    sample: Path | None = None

    @property
    def has_email(self) -> bool:
        return DEFAULT in self.email

    @property
    def has_post(self) -> bool:
        return DEFAULT in self.post

    @property
    def locales(self) -> list[str]:
        """Locale codes with their own file (besides the default), e.g. ``["et", "ro"]``."""
        return sorted({code for files in (self.email, self.post) for code in files if code})


@dataclass
class TemplateIndex:
    root: Path
    templates: dict[str, TemplateInfo] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.templates)

    def email_names(self) -> list[str]:
        return sorted(n for n, t in self.templates.items() if t.has_email)

    def post_names(self) -> list[str]:
        return sorted(n for n, t in self.templates.items() if t.has_post)

    def get(self, name: str) -> TemplateInfo | None:
        return self.templates.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.templates


def scan_templates(root: Path) -> TemplateIndex:
    """Index ``root`` (a workspace's templates/ folder); a missing folder is an empty index."""
    index = TemplateIndex(root)
    if not root.is_dir():
        return index
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        if directory.name.startswith(("_", ".")):
            continue
        info = TemplateInfo(directory.name, directory)
        for path in sorted(p for p in directory.iterdir() if p.is_file()):
            if path.name == "sample.yaml":
                info.sample = path
                continue
            for kind, pattern in _FILES.items():
                match = pattern.match(path.name)
                if match:
                    locale = (match.group(1) or DEFAULT).replace("_", "-")
                    getattr(info, kind)[locale] = path
        index.templates[info.name] = info
    return index
