"""Exporting a kind to CSV or JSON Lines, in the same shape the importer reads.

Rows go out in id order (the order they were imported or created), JSON values with
sorted keys and money with two decimals, so ``export → import into an empty store →
export`` reproduces the file byte for byte, on SQLite and PostgreSQL alike. Consent is
exported as the open grant per channel with its evidence; withdrawn history stays in the
store (``contact export`` shows it).

``coupons`` goes one way only, to the shop: every code issued — by a flow's ``coupon`` step
(``campaign_id``, ``coupon_id``) or by an agent (campaign ``care-goodwill``, ``issued_by``,
``reason``, ``order_id``) — with its percent (as written: ``15``, ``12.5``), expiry and the
customer's address, for the shop to load into its checkout.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from engine.store.models import Coupon
from engine.transfer.formats import Format, atomic_text_file, detect_format
from engine.transfer.importer import CARD, CONSENT, CONTACT, EVENT, ORDER
from engine.transfer.kinds import ExportKind
from engine.transfer.schemas import (
    ATTRIBUTE_PREFIX,
    CHANNELS,
    COLUMNS,
    Kind,
    format_attribute_cell,
    to_csv_cell,
    to_json_value,
)

CHUNK = 1_000
COUPON = Coupon.__table__  # type: ignore[attr-defined]
CENT = Decimal("0.01")


COUPON_COLUMNS = (
    "code",
    "percent",
    "expires_at",
    "email",
    "campaign_id",
    "coupon_id",
    "issued_by",
    "reason",
    "order_id",
    "created_at",
)


def export_file(
    engine: Engine, kind: Kind | ExportKind | str, path: Path | str, *, fmt: Format | str | None = None
) -> int:
    """Write every row of ``kind`` to ``path``; returns the number of rows written."""
    path = Path(path)
    fmt = detect_format(path, fmt)
    if ExportKind(kind) is ExportKind.coupons:
        with engine.connect() as conn, atomic_text_file(path) as handle:
            return _write(handle, fmt, list(COUPON_COLUMNS), [], _coupons(conn))
    kind = Kind(kind)
    with engine.connect() as conn:
        attribute_keys = _attribute_keys(conn) if kind is Kind.contacts and fmt is Format.csv else []
        columns = [name for name in COLUMNS[kind] if not (fmt is Format.csv and name == "attributes")]
        with atomic_text_file(path) as handle:
            return _write(handle, fmt, columns, attribute_keys, _ROWS[kind](conn))


def _write(
    handle: IO[str],
    fmt: Format,
    columns: list[str],
    attribute_keys: list[str],
    rows: Iterator[dict[str, Any]],
) -> int:
    count = 0
    if fmt is Format.csv:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns + [ATTRIBUTE_PREFIX + key for key in attribute_keys])
        for row in rows:
            attributes = row.get("attributes") or {}
            writer.writerow(
                [to_csv_cell(name, row.get(name)) for name in columns]
                + [format_attribute_cell(attributes.get(key)) for key in attribute_keys]
            )
            count += 1
    else:
        for row in rows:
            record = {name: to_json_value(row.get(name)) for name in columns}
            handle.write(
                json.dumps(record, ensure_ascii=False, sort_keys=False, separators=(",", ":")) + "\n"
            )
            count += 1
    return count


def _sorted_json(value: Any) -> Any:
    """JSON with keys sorted at every level: PostgreSQL's JSONB reorders keys, SQLite keeps them."""
    return json.loads(json.dumps(value, sort_keys=True)) if isinstance(value, (dict, list)) else value


def _money(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(CENT)


def _attribute_keys(conn: Connection) -> list[str]:
    keys: set[str] = set()
    for (attributes,) in conn.execution_options(yield_per=CHUNK).execute(select(CONTACT.c.attributes)):
        keys.update(attributes or {})
    return sorted(keys)


def _chunks(conn: Connection, statement: Any) -> Iterator[list[Any]]:
    result = conn.execution_options(yield_per=CHUNK).execute(statement)
    for partition in result.partitions():
        yield list(partition)


def _contacts(conn: Connection) -> Iterator[dict[str, Any]]:
    for chunk in _chunks(conn, select(CONTACT).order_by(CONTACT.c.id)):
        consents: dict[tuple[int, str], Any] = {}
        for consent in conn.execute(
            select(CONSENT)
            .where(CONSENT.c.contact_id.in_([row.id for row in chunk]), CONSENT.c.withdrawn_at.is_(None))
            .order_by(CONSENT.c.granted_at, CONSENT.c.id)
        ):
            consents[(consent.contact_id, consent.channel)] = consent  # the latest open grant wins
        for row in chunk:
            record = dict(row._mapping)
            record["total_spent"] = _money(record["total_spent"])
            record["attributes"] = _sorted_json(record["attributes"] or {})
            for channel in CHANNELS:
                grant = consents.get((row.id, channel))
                if grant is not None:
                    record[f"consent_{channel}"] = True
                    record[f"consent_{channel}_at"] = grant.granted_at
                    record[f"consent_{channel}_source"] = grant.source
                    record[f"consent_{channel}_wording"] = grant.wording_version
                    record[f"consent_{channel}_basis"] = grant.legal_basis
            yield record


def _orders(conn: Connection) -> Iterator[dict[str, Any]]:
    statement = (
        select(ORDER, CONTACT.c.email).join(CONTACT, CONTACT.c.id == ORDER.c.contact_id).order_by(ORDER.c.id)
    )
    for chunk in _chunks(conn, statement):
        for row in chunk:
            record = dict(row._mapping)
            record["total"] = _money(record["total"])
            record["items"] = _sorted_json(record["items"])
            yield record


def _gift_cards(conn: Connection) -> Iterator[dict[str, Any]]:
    purchaser, recipient = CONTACT.alias("purchaser"), CONTACT.alias("recipient")
    statement = (
        select(CARD, purchaser.c.email.label("purchaser_email"), recipient.c.email.label("recipient_email"))
        .outerjoin(purchaser, purchaser.c.id == CARD.c.purchaser_contact_id)
        .outerjoin(recipient, recipient.c.id == CARD.c.recipient_contact_id)
        .order_by(CARD.c.id)
    )
    for chunk in _chunks(conn, statement):
        for row in chunk:
            record = dict(row._mapping)
            record["amount"] = _money(record["amount"])
            record["balance"] = _money(record["balance"])
            yield record


def _events(conn: Connection) -> Iterator[dict[str, Any]]:
    statement = (
        select(EVENT, CONTACT.c.email)
        .outerjoin(CONTACT, CONTACT.c.id == EVENT.c.contact_id)
        .order_by(EVENT.c.id)
    )
    for chunk in _chunks(conn, statement):
        for row in chunk:
            record = dict(row._mapping)
            record["payload"] = _sorted_json(record["payload"] or {})
            yield record


def _coupons(conn: Connection) -> Iterator[dict[str, Any]]:
    statement = (
        select(COUPON, CONTACT.c.email)
        .outerjoin(CONTACT, CONTACT.c.id == COUPON.c.contact_id)
        .order_by(COUPON.c.id)
    )
    for chunk in _chunks(conn, statement):
        for row in chunk:
            record = dict(row._mapping)
            percent = Decimal(record["percent"])
            record["percent"] = format(percent.normalize(), "f") if percent else "0"
            yield record


_ROWS = {Kind.contacts: _contacts, Kind.orders: _orders, Kind.gift_cards: _gift_cards, Kind.events: _events}
