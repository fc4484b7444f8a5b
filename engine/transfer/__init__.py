"""Import and export of contacts, orders, gift cards and events as CSV or JSON Lines.

``import_file(engine, kind, path, clock=…)`` validates each row and upserts the good ones
in batches; ``export_file(engine, kind, path)`` writes the same format back. ``tidings
import`` / ``tidings export`` are their command line.
"""

from engine.transfer.exporter import export_file
from engine.transfer.formats import Format, TransferError, detect_format
from engine.transfer.importer import ImportReport, RowProblem, import_file, refresh_contact_aggregates
from engine.transfer.schemas import Kind

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
