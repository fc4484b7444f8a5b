"""Writing the demo shop into the store, and what it says about it afterwards.

The whole shop is written in one transaction (``BEGIN IMMEDIATE`` on SQLite): a demo
load is all or nothing, and nobody sees half a shop. Ids are assigned here, in Python,
so the bulk inserts need no ``RETURNING``: on SQLite from ``max(id)`` under the write
lock, on PostgreSQL drawn from each table's own sequence, which stays correct for the
rows other writers insert later.
"""

from __future__ import annotations

import gc
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import JSON, Numeric, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.schema import Table

from engine.clock import Clock
from engine.demo.shop import DemoRows, ShopBuilder, ids_for
from engine.errors import TidingsError
from engine.store import write_transaction
from engine.store.models import Consent, Contact, GiftCard, ShopEvent, ShopOrder, Suppression
from engine.store.types import UTCDateTime

CHUNK = 5_000
DEFAULT_SEED = 2026

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``; stages are ``generating`` and ``writing``."""


class DemoDataError(TidingsError):
    """The demo shop cannot be loaded as asked (exit 2: nothing was written)."""


def default_season(now: datetime) -> int:
    """The season (November YEAR to January YEAR+1) containing ``now``, or else the next one."""
    return now.year - 1 if now.month == 1 else now.year


@dataclass(frozen=True)
class DemoSummary:
    seed: int
    season: int
    contacts: int
    contacts_by_country: dict[str, int]
    gift_card_recipients: int
    orders: int
    orders_by_status: dict[str, int]
    gift_cards: int
    gift_cards_redeemed: int
    gift_cards_scheduled: int  # bought for someone, to arrive on a chosen day (send_on)
    returns: int
    exchanges: int
    exchanges_shipped: int
    claims: int
    claims_open: int  # opened and not resolved by the end of the season
    events: int
    events_by_type: dict[str, int]
    email_consents_open: int
    suppressions: int
    elapsed_seconds: float = field(default=0.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


class _BulkInsert:
    """Executemany straight on the driver, values pre-converted once per column kind.

    SQLAlchemy's per-value bind processing (aware datetimes, JSON, Decimal) costs more than
    SQLite's own insert work for the ~400,000 rows of a 50,000-contact shop, so the demo
    loader converts values itself, exactly as those processors would store them: UTC
    datetimes in SQLAlchemy's SQLite text format (so text comparisons in SQL agree with
    rows written through the ORM), JSON as ``json.dumps`` text (cast to JSONB on
    PostgreSQL), ``Decimal`` as a float on SQLite.
    """

    def __init__(self, conn: Connection, table: Table, columns: list[str]) -> None:
        self.conn = conn
        sqlite = conn.dialect.name == "sqlite"
        marker = "?" if sqlite else "%s"
        converters: list[Callable[[Any], Any]] = []
        placeholders: list[str] = []
        for name in columns:
            kind = table.c[name].type
            placeholder = marker
            if isinstance(kind, UTCDateTime):
                converters.append(_sqlite_time if sqlite else _same)
            elif isinstance(kind, JSON):
                converters.append(json.dumps)
                placeholder = marker if sqlite else f"CAST({marker} AS JSONB)"
            elif isinstance(kind, Numeric) and sqlite:
                converters.append(_float)
            else:
                converters.append(_same)
            placeholders.append(placeholder)
        self.getter = itemgetter(*columns)
        self.converted = [(i, convert) for i, convert in enumerate(converters) if convert is not _same]
        quoted = ", ".join(f'"{name}"' for name in columns)
        self.sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({", ".join(placeholders)})'

    def __call__(self, rows: list[dict[str, Any]]) -> None:
        getter, converted = self.getter, self.converted
        values: list[Any] = []
        for row in rows:
            record = list(getter(row))
            for index, convert in converted:
                record[index] = convert(record[index])
            values.append(tuple(record))
        self.conn.exec_driver_sql(self.sql, values)


def _same(value: Any) -> Any:
    return value


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _sqlite_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # drop "+00:00": SQLite rows hold naive UTC


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Generating ~1 million small objects triggers full GC passes that find nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _allocate_ids(conn: Connection, table: Table, count: int) -> list[int]:
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
            {"table": table.name, "n": count},
        )
        return sorted(row[0] for row in rows)
    start = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(start + 1, start + 1 + count))


def _existing_emails(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(_table(Contact).c.email)).scalars())


def _count_contacts(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(_table(Contact))).scalar_one())


def _check_store(conn: Connection, *, seed: int, append: bool) -> None:
    existing = _count_contacts(conn)
    if existing and not append:
        raise DemoDataError(
            f"the store already has {existing:,} contacts; demo-data loads into an empty store "
            "(use --append to add the demo shop beside them)"
        )
    marker = f"{ids_for(seed)['contact']}000001"
    contacts = _table(Contact)
    if append and conn.execute(select(contacts.c.id).where(contacts.c.external_id == marker)).first():
        raise DemoDataError(
            f"the demo shop with seed {seed} is already in the store; append it with another --seed"
        )


def generate_demo_shop(
    engine: Engine,
    *,
    contacts: int,
    seed: int = DEFAULT_SEED,
    season: int | None = None,
    clock: Clock,
    append: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Generate and store a demo shop of exactly ``contacts`` contacts (gift-card recipients included).

    The clock only picks the default season and stamps ``created_at``/``updated_at``;
    everything else comes from ``seed``, so two loads with one seed hold identical rows.
    Refuses a store that already has contacts unless ``append`` (then the seed's own id
    prefixes keep the two shops apart, and email addresses avoid those already taken).
    """
    if contacts < 1:
        raise DemoDataError(f"--contacts must be at least 1, got {contacts}")
    started = time.perf_counter()
    now = clock.now()
    season = default_season(now) if season is None else season
    if not 1970 <= season <= 9998:
        raise DemoDataError(f"--season must be a year, got {season}")
    with engine.connect() as conn:
        _check_store(conn, seed=seed, append=append)
    if progress:
        progress("generating", 0, contacts)
    taken = _existing_emails(engine) if append else None
    with _collector_paused():
        rows = ShopBuilder(contacts=contacts, seed=seed, season=season, taken_emails=taken).build()
        if progress:
            progress("generating", contacts, contacts)
        with write_transaction(engine) as conn:
            _check_store(conn, seed=seed, append=append)
            _write(conn, rows, now=now, progress=progress)
    return _summarise(rows, seed=seed, season=season, elapsed=time.perf_counter() - started)


def _write(conn: Connection, rows: DemoRows, *, now: datetime, progress: Progress | None) -> None:
    total = rows.total
    done = 0

    def put(table: Table, batch: list[dict[str, Any]]) -> None:
        nonlocal done
        if not batch:
            return
        write = _BulkInsert(conn, table, list(batch[0]))
        for start in range(0, len(batch), CHUNK):
            chunk = batch[start : start + CHUNK]
            write(chunk)
            done += len(chunk)
            if progress:
                progress("writing", done, total)

    contact_ids = _allocate_ids(conn, _table(Contact), len(rows.contacts))
    for row, contact_id in zip(rows.contacts, contact_ids, strict=True):
        row["id"] = contact_id
        row["created_at"] = now
        row["updated_at"] = now
    put(_table(Contact), rows.contacts)

    for row in rows.consents:
        row["contact_id"] = contact_ids[row["contact_id"]]
    put(_table(Consent), rows.consents)
    put(_table(Suppression), rows.suppressions)

    order_ids = _allocate_ids(conn, _table(ShopOrder), len(rows.orders))
    for row, order_id in zip(rows.orders, order_ids, strict=True):
        row["id"] = order_id
        row["contact_id"] = contact_ids[row["contact_id"]]
    put(_table(ShopOrder), rows.orders)

    card_ids = _allocate_ids(conn, _table(GiftCard), len(rows.gift_cards))
    for row, card_id in zip(rows.gift_cards, card_ids, strict=True):
        row["id"] = card_id
        row["purchaser_contact_id"] = contact_ids[row["purchaser_contact_id"]]
        row["recipient_contact_id"] = contact_ids[row["recipient_contact_id"]]
    put(_table(GiftCard), rows.gift_cards)

    event_ids = _allocate_ids(conn, _table(ShopEvent), len(rows.events))
    for row, event_id in zip(rows.events, event_ids, strict=True):
        row["id"] = event_id
        if row["contact_id"] is not None:
            row["contact_id"] = contact_ids[row["contact_id"]]
    put(_table(ShopEvent), rows.events)


def _summarise(rows: DemoRows, *, seed: int, season: int, elapsed: float) -> DemoSummary:
    recipients = {card["recipient_contact_id"] for card in rows.gift_cards}
    types = Counter(row["type"] for row in rows.events)
    resolved = {row["payload"]["claim_id"] for row in rows.events if row["type"] == "claim.resolved"}
    opened = {row["payload"]["claim_id"] for row in rows.events if row["type"] == "claim.opened"}
    return DemoSummary(
        seed=seed,
        season=season,
        contacts=len(rows.contacts),
        contacts_by_country=dict(sorted(Counter(row["country"] for row in rows.contacts).items())),
        gift_card_recipients=len(recipients),
        orders=len(rows.orders),
        orders_by_status=dict(sorted(Counter(row["status"] for row in rows.orders).items())),
        gift_cards=len(rows.gift_cards),
        gift_cards_redeemed=sum(1 for card in rows.gift_cards if card["redeemed_at"] is not None),
        gift_cards_scheduled=sum(
            1 for row in rows.events if row["type"] == "gift_card.purchased" and "send_on" in row["payload"]
        ),
        returns=types["return.requested"],
        exchanges=types["exchange.requested"],
        exchanges_shipped=types["exchange.shipped"],
        claims=len(opened),
        claims_open=len(opened - resolved),
        events=len(rows.events),
        events_by_type=dict(sorted(types.items())),
        email_consents_open=sum(
            1 for row in rows.consents if row["channel"] == "email" and row["withdrawn_at"] is None
        ),
        suppressions=len(rows.suppressions),
        elapsed_seconds=round(elapsed, 3),
    )
