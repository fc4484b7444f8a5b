"""Which names the preview accepts in a URL, and why it refuses the rest.

The preview reads files from the workspace and the outbox because a URL names them.
A name is therefore accepted only when *both* hold:

1. it has the shape of a plain file or folder name (letters, digits, ``.``, ``_``, ``-``,
   ``@``, ``+``; no separators, no ``..``, no leading dot, no ``%``), so absolute paths,
   ``../`` walks and encoded variants (``%2e%2e``, ``%252f`` after one decoding) never
   reach the file system; and
2. it is one of the names actually present (the template index, or the folder
   listing of the outbox), so even a well-formed name cannot point elsewhere.

A refused name is answered with 404, the same as a name that does not exist, so the
answer says nothing about what lies outside the served folders.
"""

from __future__ import annotations

import re
from pathlib import Path

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,199}")

OUTBOX_KINDS = {"email": ".eml", "social": ".json"}


def is_plain_name(name: str) -> bool:
    """A single path component with no way to climb out of its folder."""
    return bool(_PLAIN.fullmatch(name)) and ".." not in name


def outbox_file(outbox_dir: Path, kind: str, name: str) -> Path | None:
    """The file ``name`` of the outbox's ``kind`` folder, or None when the name is refused or absent."""
    suffix = OUTBOX_KINDS.get(kind)
    if suffix is None or not is_plain_name(name) or not name.endswith(suffix):
        return None
    folder = (outbox_dir / kind).resolve()
    candidate = folder / name
    try:
        # The file must be a regular file directly inside the folder, even through symlinks.
        if candidate.resolve().parent != folder or not candidate.is_file():
            return None
    except OSError:
        return None
    return candidate
