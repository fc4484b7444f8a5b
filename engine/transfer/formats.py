"""Reading and writing rows as CSV or JSON Lines, with the physical line of every row.

Line numbers are what an editor shows: in CSV the header is line 1 and a row whose
quoted cell spans several lines is reported at the line where it starts; in JSON Lines
each non-blank line is one row.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from engine.errors import TidingsError

EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class TransferError(TidingsError):
    """A file that cannot be imported or exported at all (exit 2)."""


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


def detect_format(path: Path, explicit: Format | str | None = None) -> Format:
    if explicit:
        return Format(explicit)
    suffix = path.suffix.lower()
    if suffix in EXTENSIONS:
        return Format(EXTENSIONS[suffix])
    raise TransferError(
        f"{path}: cannot tell the format from the extension; use .csv, .jsonl or --format csv|jsonl"
    )


@dataclass(frozen=True, slots=True)
class Record:
    """One row as read: its first physical line, and either its values or why it could not be read."""

    line: int
    values: dict[str, Any] | None
    error: str | None = None


def check_readable(path: Path) -> None:
    """Refuse, as one line, a file that is missing, a folder, unreadable or not UTF-8 text."""
    try:
        decoder = codecs.getincrementaldecoder("utf-8")()
        with path.open("rb") as handle:
            line = 1
            while chunk := handle.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    line += chunk[: exc.start].count(b"\n")
                    raise TransferError(
                        f"{path}:{line}: not UTF-8 text (byte {exc.object[exc.start]:#04x})"
                    ) from None
                line += chunk.count(b"\n")
            decoder.decode(b"", final=True)
    except IsADirectoryError:
        raise TransferError(f"{path}: is a folder, not a file") from None
    except FileNotFoundError:
        raise TransferError(f"{path}: no such file") from None
    except PermissionError:
        raise TransferError(f"{path}: permission denied") from None
    except UnicodeDecodeError:
        raise TransferError(f"{path}: not UTF-8 text (the file ends inside a character)") from None
    except OSError as exc:
        raise TransferError(f"{path}: cannot read ({exc.strerror or exc})") from None


def read_csv(handle: IO[str]) -> tuple[list[str], Iterator[Record]]:
    """The header, and the rows as ``{column: cell}`` (empty cells included as ``""``)."""
    reader = csv.reader(handle)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        return [], iter(())
    except csv.Error as exc:
        raise TransferError(f"{getattr(handle, 'name', 'file')}:1: unreadable CSV header ({exc})") from None

    def rows() -> Iterator[Record]:
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Record(start, None, f"unreadable CSV row ({exc})")
                continue
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            if len(cells) != len(header):
                yield Record(start, None, f"expected {len(header)} cells like the header, found {len(cells)}")
                continue
            yield Record(start, dict(zip(header, cells, strict=True)))

    return header, rows()


def read_jsonl(handle: IO[str]) -> Iterator[Record]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Record(number, None, f"not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield Record(number, None, "not valid JSON (nested too deeply to read)")
            continue
        if not isinstance(value, dict):
            yield Record(number, None, f"expected a JSON object, found {type(value).__name__}")
            continue
        yield Record(number, value)


@contextmanager
def atomic_text_file(path: Path) -> Iterator[IO[str]]:
    """Write beside ``path`` and move into place at the end: a failed export leaves no half file."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TransferError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
