"""Template values: a read-only bag of fields that Jinja reads by attribute.

Values are :class:`Record` objects rather than dicts because Jinja resolves ``order.items``
as an *attribute* first: on a dict that is the ``dict.items`` method, not the order's items.
A Record keeps its fields in the instance ``__dict__``, so attribute lookup is one dict hit,
and still answers ``record["key"]`` for keys that are not identifiers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Record:
    """A read-only bag of fields for templates: ``r.name`` and ``r["name"]``."""

    def __init__(self, fields: Mapping[str, Any]) -> None:
        self.__dict__.update({str(key): _wrap(value) for key, value in fields.items()})

    def __getitem__(self, key: str) -> Any:
        try:
            return self.__dict__[key]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dict__)

    def __len__(self) -> int:
        return len(self.__dict__)

    def __bool__(self) -> bool:
        """Present is true (``{% if gift_card %}``), even with no fields."""
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and other.__dict__ == self.__dict__

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Record({self.__dict__!r})"


def _wrap(value: Any) -> Any:
    if isinstance(value, Record):
        return value
    if isinstance(value, Mapping):
        return Record(value)
    if isinstance(value, list | tuple):
        return [_wrap(item) for item in value]
    return value


def unwrap(value: Any) -> Any:
    """Plain dicts/lists again (for JSON output and storing an enrolment's context)."""
    if isinstance(value, Record):
        return {key: unwrap(item) for key, item in value.__dict__.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value
