"""Importing contacts, orders, gift cards and events: validate each row, upsert good rows in batches.

Each batch of good rows is one transaction, so a bad row never blocks its neighbours and a
crash loses at most one batch. Rows are checked before they reach the database (see
:mod:`engine.transfer.schemas`); should the database still refuse a batch (a constraint the
checks do not know), the batch is applied again one row per transaction and only the rows
the database refuses are rejected, with its one-line reason: good rows always land. A lost
connection is not a row's fault and ends the import (exit 2), as before.

Rows are matched on their natural key (``email`` for contacts, ``external_id`` for the
rest): importing a file twice updates, never duplicates.
A key that repeats inside one batch closes the batch first, so the later row updates the
earlier one as it would across two imports.

Orders are the source of truth for contact aggregates: an order import recomputes
``orders_count``, ``total_spent``, ``last_order_at`` and ``first_seen_at`` of the contacts it
touches (cancelled orders do not count; returned ones count as orders, not as spending).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, IntegrityError, InternalError, ProgrammingError
from sqlalchemy.sql.schema import Table

from engine.clock import Clock
from engine.store import write_transaction
from engine.store.models import Consent, Contact, GiftCard, ShopEvent, ShopOrder
from engine.transfer.formats import (
    Format,
    Record,
    TransferError,
    check_readable,
    detect_format,
    read_csv,
    read_jsonl,
)
from engine.transfer.schemas import (
    CHANNELS,
    KEYS,
    ContactRow,
    EventRow,
    GiftCardRow,
    Kind,
    OrderRow,
    check_header,
    describe,
    from_csv,
    validate,
)

BATCH_SIZE = 1_000
NOT_COUNTED = ("cancelled",)
NOT_SPENT = ("cancelled", "returned")


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


CONTACT, CONSENT, ORDER, CARD, EVENT = (_table(m) for m in (Contact, Consent, ShopOrder, GiftCard, ShopEvent))


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A rejected row, printed as ``FILE:LINE: message``."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class ImportReport:
    kind: Kind
    path: str
    imported: int = 0
    updated: int = 0
    rejected: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.rejected else 0

    def summary(self) -> str:
        return f"imported {self.imported:,}, updated {self.updated:,}, rejected {self.rejected:,}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "imported": self.imported,
            "updated": self.updated,
            "rejected": self.rejected,
            "problems": [str(problem) for problem in self.problems],
        }


@dataclass(frozen=True, slots=True)
class _Good:
    line: int
    row: Any  # the kind's validated row model


@dataclass
class _Outcome:
    imported: int = 0
    updated: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


MAX_KEPT_PROBLEMS = 1_000


def import_file(
    engine: Engine,
    kind: Kind | str,
    path: Path | str,
    *,
    clock: Clock,
    fmt: Format | str | None = None,
    batch_size: int = BATCH_SIZE,
    on_problem: Callable[[RowProblem], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path`` into the store; bad rows are reported (``on_problem``) and skipped.

    Raises :class:`TransferError` (exit 2) when the file cannot be read at all: missing,
    not UTF-8, unknown format, or a CSV header with unknown or missing columns.
    """
    kind = Kind(kind)
    path = Path(path)
    fmt = detect_format(path, fmt)
    check_readable(path)
    shown = str(path)
    report = ImportReport(kind, shown)

    def reject(line: int, message: str) -> None:
        problem = RowProblem(shown, line, message)
        report.rejected += 1
        if len(report.problems) < MAX_KEPT_PROBLEMS:
            report.problems.append(problem)
        if on_problem:
            on_problem(problem)

    apply = _APPLY[kind]
    key_name = KEYS[kind]
    batch: list[_Good] = []
    keys: set[str] = set()
    seen = 0

    def flush() -> None:
        if not batch:
            return
        try:
            with write_transaction(engine) as conn:
                outcomes = [apply(conn, batch, clock.now())]
        except (DataError, IntegrityError, ProgrammingError, InternalError):
            outcomes = [_apply_alone(engine, apply, good, clock.now()) for good in batch]
        for outcome in outcomes:
            report.imported += outcome.imported
            report.updated += outcome.updated
            for line, message in sorted(outcome.rejected):
                reject(line, message)
        batch.clear()
        keys.clear()

    with path.open(encoding="utf-8-sig", newline="") as handle:
        for record in _records(kind, fmt, handle, shown):
            seen += 1
            good = _validate(kind, fmt, record)
            if isinstance(good, str):
                reject(record.line, good)
                continue
            key = getattr(good.row, key_name)
            if key in keys or len(batch) >= batch_size:
                flush()
            batch.append(good)
            keys.add(key)
            if progress and seen % batch_size == 0:
                progress(seen)
        flush()
    if progress:
        progress(seen)
    return report


def _apply_alone(
    engine: Engine, apply: Callable[[Connection, list[_Good], datetime], _Outcome], good: _Good, now: datetime
) -> _Outcome:
    """One row in its own transaction; the database's refusal is that row's problem."""
    try:
        with write_transaction(engine) as conn:
            return apply(conn, [good], now)
    except (DataError, IntegrityError, ProgrammingError, InternalError) as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        return _Outcome(rejected=[(good.line, f"the database refused this row: {reason[:200]}")])


def _records(kind: Kind, fmt: Format, handle: Any, shown: str) -> Iterator[Record]:
    if fmt is Format.jsonl:
        return read_jsonl(handle)
    header, rows = read_csv(handle)
    if not header:
        raise TransferError(f"{shown}:1: empty file, expected a header line")
    problems = check_header(kind, header)
    if problems:
        raise TransferError(f"{shown}:1: {'; '.join(problems)}")
    return rows


def _validate(kind: Kind, fmt: Format, record: Record) -> _Good | str:
    if record.values is None:
        return record.error or "unreadable row"
    try:
        values = from_csv(kind, record.values) if fmt is Format.csv else record.values
        return _Good(record.line, validate(kind, values))
    except ValidationError as exc:
        return describe(exc)
    except ValueError as exc:
        return str(exc)


# --- shared helpers ---------------------------------------------------------------------


def _given(row: Any, names: Iterable[str]) -> dict[str, Any]:
    """The row's values for ``names`` that the file actually gave."""
    present = row.model_fields_set
    return {name: getattr(row, name) for name in names if name in present}


def _defaults(model: type[BaseModel], names: Iterable[str]) -> dict[str, Any]:
    """The model's defaults for ``names``: what a new row gets for the columns a file left out."""
    fields = model.model_fields
    return {name: fields[name].get_default(call_default_factory=True) for name in names}


def _ids_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    wanted = sorted({email for email in emails if email})
    if not wanted:
        return {}
    rows = conn.execute(select(CONTACT.c.email, CONTACT.c.id).where(CONTACT.c.email.in_(wanted)))
    return {email: contact_id for email, contact_id in rows}


def _existing(conn: Connection, table: Table, keys: Sequence[str]) -> dict[str, Any]:
    rows = conn.execute(select(table).where(table.c.external_id.in_(keys)))
    return {row.external_id: row for row in rows}


def _update_many(conn: Connection, table: Table, changes: list[dict[str, Any]]) -> None:
    """Executemany updates by id, grouped by the set of columns each change sets."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for change in changes:
        columns = tuple(sorted(name for name in change if name != "id"))
        if columns:
            groups.setdefault(columns, []).append(change)
    for columns, rows in groups.items():
        statement = (
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({name: bindparam(f"_v_{name}") for name in columns})
        )
        params = [{"_id": row["id"], **{f"_v_{name}": row[name] for name in columns}} for row in rows]
        conn.execute(statement, params)


def _missing_contact(email: str) -> str:
    return f"no contact with email {email!r} (import contacts first)"


def refresh_contact_aggregates(conn: Connection, contact_ids: Iterable[int]) -> None:
    """Recompute orders_count, total_spent, last_order_at and first_seen_at from the contacts' orders."""
    ids = sorted(set(contact_ids))
    if not ids:
        return
    spent = func.sum(ORDER.c.total).filter(ORDER.c.status.not_in(NOT_SPENT))
    rows = conn.execute(
        select(
            ORDER.c.contact_id,
            func.count(),
            spent,
            func.max(ORDER.c.placed_at),
            func.min(ORDER.c.placed_at),
        )
        .where(ORDER.c.contact_id.in_(ids), ORDER.c.status.not_in(NOT_COUNTED))
        .group_by(ORDER.c.contact_id)
    )
    totals = {row[0]: row[1:] for row in rows}
    seen = dict(
        conn.execute(select(CONTACT.c.id, CONTACT.c.first_seen_at).where(CONTACT.c.id.in_(ids))).all()
    )
    changes = []
    for contact_id in ids:
        count, total, last, first = totals.get(contact_id, (0, None, None, None))
        first_seen = seen.get(contact_id)
        if first is not None:
            first_seen = first if first_seen is None else min(first_seen, first)
        changes.append(
            {
                "id": contact_id,
                "orders_count": count,
                "total_spent": Decimal(total or 0).quantize(Decimal("0.01")),
                "last_order_at": last,
                "first_seen_at": first_seen,
            }
        )
    _update_many(conn, CONTACT, changes)


# --- contacts ---------------------------------------------------------------------------

_CONTACT_FIELDS = (
    "external_id",
    "first_name",
    "last_name",
    "locale",
    "country",
    "timezone",
    "x_handle",
    "tags",
    "first_seen_at",
    "last_order_at",
    "orders_count",
    "total_spent",
)


def _apply_contacts(conn: Connection, batch: list[_Good], now: datetime) -> _Outcome:
    outcome = _Outcome()
    rows: list[tuple[int, ContactRow]] = [(good.line, good.row) for good in batch]
    existing = {
        row.email: row
        for row in conn.execute(
            select(CONTACT.c.id, CONTACT.c.email, CONTACT.c.attributes).where(
                CONTACT.c.email.in_([row.email for _, row in rows])
            )
        )
    }
    wanted_ids = [row.external_id for _, row in rows if row.external_id]
    owners = (
        dict(
            conn.execute(
                select(CONTACT.c.external_id, CONTACT.c.email).where(CONTACT.c.external_id.in_(wanted_ids))
            ).all()
        )
        if wanted_ids
        else {}
    )
    inserts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    accepted: list[ContactRow] = []
    for line, row in rows:
        if row.external_id and owners.get(row.external_id, row.email) != row.email:
            outcome.rejected.append(
                (line, f"external_id {row.external_id!r} belongs to {owners[row.external_id]!r}")
            )
            continue
        if row.external_id:
            owners[row.external_id] = row.email
        values = _given(row, _CONTACT_FIELDS)
        current = existing.get(row.email)
        if current is None:
            attributes = {key: value for key, value in row.attributes.items() if value is not None}
            inserts.append(
                _defaults(ContactRow, _CONTACT_FIELDS)
                | values
                | {"email": row.email, "attributes": attributes, "created_at": now, "updated_at": now}
            )
            outcome.imported += 1
        else:
            if "attributes" in row.model_fields_set:
                merged = dict(current.attributes or {})
                for key, value in row.attributes.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                values["attributes"] = merged
            changes.append({"id": current.id, **values, "updated_at": now})
            outcome.updated += 1
        accepted.append(row)
    if inserts:
        conn.execute(insert(CONTACT), inserts)
    _update_many(conn, CONTACT, changes)
    if any(getattr(row, f"consent_{channel}") is not None for row in accepted for channel in CHANNELS):
        _apply_consents(conn, accepted, _ids_by_email(conn, [row.email for row in accepted]), now)
    return outcome


def _apply_consents(conn: Connection, rows: list[ContactRow], ids: dict[str, int], now: datetime) -> None:
    """``yes`` adds a grant (with its evidence) when none is open; ``no`` withdraws the open one."""
    open_rows: dict[tuple[int, str], int] = {}
    for consent_id, contact_id, channel in conn.execute(
        select(CONSENT.c.id, CONSENT.c.contact_id, CONSENT.c.channel)
        .where(CONSENT.c.contact_id.in_(sorted(set(ids.values()))), CONSENT.c.withdrawn_at.is_(None))
        .order_by(CONSENT.c.granted_at)
    ):
        open_rows[(contact_id, channel)] = consent_id
    grants: list[dict[str, Any]] = []
    withdrawals: list[dict[str, Any]] = []
    for row in rows:
        contact_id = ids[row.email]
        for channel in CHANNELS:
            wanted = getattr(row, f"consent_{channel}")
            at = getattr(row, f"consent_{channel}_at") or now
            source = getattr(row, f"consent_{channel}_source")
            key = (contact_id, channel)
            if wanted is True and key not in open_rows:
                grants.append(
                    {
                        "contact_id": contact_id,
                        "channel": channel,
                        "granted_at": at,
                        "withdrawn_at": None,
                        "source": source or "import",
                        "wording_version": getattr(row, f"consent_{channel}_wording"),
                        "legal_basis": getattr(row, f"consent_{channel}_basis") or "consent",
                        "withdrawn_source": None,
                    }
                )
                open_rows[key] = -len(grants)  # opened in this batch
            elif wanted is False and key in open_rows:
                marker = open_rows.pop(key)
                if marker < 0:
                    grants[-marker - 1].update(withdrawn_at=at, withdrawn_source=source or "import")
                else:
                    withdrawals.append(
                        {"id": marker, "withdrawn_at": at, "withdrawn_source": source or "import"}
                    )
    if grants:
        conn.execute(insert(CONSENT), grants)
    _update_many(conn, CONSENT, withdrawals)


# --- orders, gift cards, events ---------------------------------------------------------

_ORDER_FIELDS = tuple(name for name in OrderRow.model_fields if name not in ("external_id", "email"))


def _apply_orders(conn: Connection, batch: list[_Good], now: datetime) -> _Outcome:
    outcome = _Outcome()
    ids = _ids_by_email(conn, [good.row.email for good in batch])
    existing = _existing(conn, ORDER, [good.row.external_id for good in batch])
    inserts, changes, touched = [], [], set()
    defaults = _defaults(OrderRow, _ORDER_FIELDS)
    for good in batch:
        row: OrderRow = good.row
        contact_id = ids.get(row.email)
        if contact_id is None:
            outcome.rejected.append((good.line, _missing_contact(row.email)))
            continue
        values = _given(row, _ORDER_FIELDS)
        current = existing.get(row.external_id)
        touched.add(contact_id)
        if current is None:
            inserts.append(defaults | values | {"external_id": row.external_id, "contact_id": contact_id})
            outcome.imported += 1
        else:
            touched.add(current.contact_id)
            changes.append({"id": current.id, "contact_id": contact_id, **values})
            outcome.updated += 1
    if inserts:
        conn.execute(insert(ORDER), inserts)
    _update_many(conn, ORDER, changes)
    refresh_contact_aggregates(conn, touched)
    return outcome


_CARD_FIELDS = ("code_last4", "amount", "balance", "currency", "issued_at", "redeemed_at", "is_digital")


def _apply_gift_cards(conn: Connection, batch: list[_Good], now: datetime) -> _Outcome:
    outcome = _Outcome()
    emails = [e for good in batch for e in (good.row.purchaser_email, good.row.recipient_email) if e]
    ids = _ids_by_email(conn, emails)
    existing = _existing(conn, CARD, [good.row.external_id for good in batch])
    inserts, changes = [], []
    for good in batch:
        row: GiftCardRow = good.row
        unknown = [e for e in (row.purchaser_email, row.recipient_email) if e and e not in ids]
        if unknown:
            outcome.rejected.append((good.line, _missing_contact(unknown[0])))
            continue
        values = _given(row, _CARD_FIELDS)
        for role in ("purchaser", "recipient"):
            if f"{role}_email" in row.model_fields_set:
                email = getattr(row, f"{role}_email")
                values[f"{role}_contact_id"] = ids[email] if email else None
        current = existing.get(row.external_id)
        if current is None:
            balance = row.amount if row.balance is None else row.balance
            inserts.append(
                {"purchaser_contact_id": None, "recipient_contact_id": None, "code_last4": None}
                | {"currency": row.currency, "redeemed_at": None, "is_digital": row.is_digital}
                | values
                | {"external_id": row.external_id, "balance": balance}
            )
            outcome.imported += 1
        else:
            changes.append({"id": current.id, **values})
            outcome.updated += 1
    if inserts:
        conn.execute(insert(CARD), inserts)
    _update_many(conn, CARD, changes)
    return outcome


_EVENT_FIELDS = ("type", "occurred_at", "received_at", "processed_at", "payload")


def _apply_events(conn: Connection, batch: list[_Good], now: datetime) -> _Outcome:
    outcome = _Outcome()
    ids = _ids_by_email(conn, [good.row.email for good in batch if good.row.email])
    existing = _existing(conn, EVENT, [good.row.external_id for good in batch])
    inserts, changes = [], []
    for good in batch:
        row: EventRow = good.row
        if row.email and row.email not in ids:
            outcome.rejected.append((good.line, _missing_contact(row.email)))
            continue
        values = _given(row, _EVENT_FIELDS)
        if "email" in row.model_fields_set:
            values["contact_id"] = ids[row.email] if row.email else None
        current = existing.get(row.external_id)
        if current is None:
            inserts.append(
                {"contact_id": None, "received_at": now, "processed_at": None, "payload": {}}
                | values
                | {"external_id": row.external_id}
            )
            outcome.imported += 1
        else:
            changes.append({"id": current.id, **values})
            outcome.updated += 1
    if inserts:
        conn.execute(insert(EVENT), inserts)
    _update_many(conn, EVENT, changes)
    return outcome


_APPLY: dict[Kind, Callable[[Connection, list[_Good], datetime], _Outcome]] = {
    Kind.contacts: _apply_contacts,
    Kind.orders: _apply_orders,
    Kind.gift_cards: _apply_gift_cards,
    Kind.events: _apply_events,
}
