"""Import and export of contacts, orders, gift cards and events as CSV or JSON Lines.

``import_file(engine, kind, path, clock=…)`` validates each row and upserts the good ones
in batches; ``export_file(engine, kind, path)`` writes the same format back. ``tidings
import`` / ``tidings export`` are their command line.

The importer and exporter load on first use (PEP 562), so that naming a ``Kind`` or a
``Format`` — as every ``tidings`` start does to build its help — stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from engine.transfer.formats import Format, TransferError, detect_format
from engine.transfer.kinds import Kind

_LAZY = {
    "export_file": "engine.transfer.exporter",
    "ImportReport": "engine.transfer.importer",
    "RowProblem": "engine.transfer.importer",
    "import_file": "engine.transfer.importer",
    "refresh_contact_aggregates": "engine.transfer.importer",
}

__all__ = [
    "Format",
    "ImportReport",
    "Kind",
    "RowProblem",
    "TransferError",
    "detect_format",
    "export_file",
    "import_file",
    "refresh_contact_aggregates",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engine.transfer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
