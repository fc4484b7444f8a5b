"""``tidings init DIR``: a minimal workspace that validates, previews and simulates as it is.

One marketing campaign (a calendar trigger on ``christmas`` from ``schedules/dates.yaml``, a
segment from ``campaigns/segments.yaml``), one email template in the default locale with its
``sample.yaml`` and an image in ``images/``, a ``.gitignore`` for ``var/``, and the JSON Schemas
the YAML files' ``# yaml-language-server: $schema=…`` lines point at, generated from the
models the loader validates with, so an editor checks exactly what ``validate`` checks.

The files live beside this module (``starter/``), so they are read, validated and tested
as files, not as strings in code. A folder that already holds anything is refused unless
``force``: then the starter's files are written over, and nothing else is touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine.errors import TidingsError
from engine.workspace.schema import SCHEMA_KINDS, json_schema

STARTER = Path(__file__).with_name("starter")
#: A file shipped under a name packaging tools do not hide, written under its real one.
RENAMED = {"gitignore": ".gitignore"}


class StarterRefused(TidingsError):
    """The folder cannot take a new workspace (it holds files, or is not a folder)."""


def starter_files() -> list[Path]:
    """The starter's files, relative to :data:`STARTER`."""
    return sorted(
        p.relative_to(STARTER) for p in STARTER.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )


def write_starter(target: Path, *, force: bool = False) -> list[Path]:
    """Write the starter workspace into ``target``; returns the files written, relative to it."""
    if target.exists() and not target.is_dir():
        raise StarterRefused(f"{target}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise StarterRefused(
            f"{target}: not empty; choose an empty folder, or --force to write the starter over it"
        )
    written: list[Path] = []
    for relative in starter_files():
        destination = target / relative.parent / RENAMED.get(relative.name, relative.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STARTER / relative, destination)
        written.append(destination.relative_to(target))
    schemas = target / "schemas"
    schemas.mkdir(parents=True, exist_ok=True)
    for kind in SCHEMA_KINDS:
        path = schemas / f"{kind}.schema.json"
        path.write_text(json.dumps(json_schema(kind), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path.relative_to(target))
    return sorted(written)
