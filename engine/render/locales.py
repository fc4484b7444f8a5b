"""Which locale file a contact gets: ``ro-RO`` → ``ro`` → the default file.

``email.mjml`` is the default locale (``TIDINGS_DEFAULT_LOCALE``); ``email.LL.mjml`` overrides
it for LL. The same lookup applies to layouts and partials, so a Romanian email gets the
Romanian footer without the template saying so.
"""

from __future__ import annotations

from pathlib import Path

from engine.workspace.values import normalise_locale


def normalise(locale: str | None) -> str | None:
    """``ro_ro`` / ``RO-ro`` → ``ro-RO``; empty → None (the workspace's rule: ``normalise_locale``)."""
    return normalise_locale(locale)


def locale_chain(locale: str | None) -> list[str]:
    """The locale suffixes to try, most specific first: ``ro-RO`` → [``ro-RO``, ``ro``]."""
    value = normalise(locale)
    if value is None:
        return []
    parts = value.split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


def localised(path: Path, locale: str | None, default_locale: str) -> tuple[Path, str]:
    """The file to use for ``path`` (``x/email.mjml``) in ``locale``, and the locale of that file."""
    for candidate_locale in locale_chain(locale):
        candidate = path.with_name(f"{path.stem}.{candidate_locale}{path.suffix}")
        if candidate.is_file():
            return candidate, candidate_locale
    return path, default_locale


def file_locale(path: Path, base_stem: str, default_locale: str) -> str:
    """The locale a file stands for: ``email.ro.mjml`` → ``ro``, ``email.mjml`` → the default."""
    middle = path.name[len(base_stem) : -len(path.suffix) or None].strip(".")
    return normalise(middle) or default_locale


def babel_locale(locale: str) -> str:
    """Babel spells ``ro-RO`` as ``ro_RO``."""
    return locale.replace("-", "_")
