"""Hostile values in an import are that row's problem: the good rows land, on SQLite and PostgreSQL alike.

NUL characters (PostgreSQL refuses them anywhere), line breaks in names (they would end up in
``To:`` headers), two addresses in one cell, JSON nested past any sense: each is rejected as
``FILE:LINE: message`` before it reaches the database, and a refusal by the database itself
(a shop's own constraint) rejects only the row it concerns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.store.models import Contact, ShopEvent
from engine.transfer import import_file

CONTACT = Contact.__table__  # type: ignore[attr-defined]
EVENT = ShopEvent.__table__  # type: ignore[attr-defined]
CLOCK = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


def event(external_id: str, payload: object) -> dict[str, object]:
    return {
        "external_id": external_id,
        "type": "custom.note",
        "occurred_at": "2026-11-20T10:00:00Z",
        "payload": payload,
    }


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def emails(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(CONTACT.c.email)).scalars())


def first_names(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(CONTACT.c.email, CONTACT.c.first_name)).all())  # type: ignore[arg-type]


def test_a_nul_byte_in_row_1501_rejects_that_row_and_imports_the_other_1999(
    tmp_path: Path, store_engine: Engine
) -> None:
    rows: list[dict[str, object]] = [
        {"email": f"c{n}@example.com", "first_name": f"C{n}"} for n in range(2000)
    ]
    rows[1500]["first_name"] = "Bad\x00Name"
    path = jsonl(tmp_path / "contacts.jsonl", rows)

    report = import_file(store_engine, "contacts", path, clock=CLOCK)

    assert (report.imported, report.rejected) == (1999, 1)
    assert [str(p) for p in report.problems] == [f"{path}:1501: first_name: contains a NUL character"]
    assert len(emails(store_engine)) == 1999 and "c1500@ex.com" not in emails(store_engine)


def test_nul_anywhere_in_nested_json_is_named_by_its_path(tmp_path: Path, store_engine: Engine) -> None:
    path = jsonl(
        tmp_path / "events.jsonl",
        [
            {
                "external_id": "e1",
                "type": "custom.note",
                "occurred_at": "2026-11-20T10:00:00Z",
                "payload": {"a": 1},
            },
            {
                "external_id": "e2",
                "type": "custom.note",
                "occurred_at": "2026-11-20T10:00:00Z",
                "payload": {"items": [{"note": "ok"}, {"note\x00": "x"}]},
            },
        ],
    )

    report = import_file(store_engine, "events", path, clock=CLOCK)

    assert report.imported == 1
    assert [str(p) for p in report.problems] == [
        f"{path}:2: payload.items[1]: a key contains a NUL character"
    ]


@pytest.mark.parametrize(
    ("cell", "says"),
    [
        ("Ana\r\nBcc: victim@evil.example", "first_name: the value contains a control character (CR)"),
        ("Ana\nMaria", "control character (LF)"),
        ("Ana\u2028Maria", "control character (LINE SEPARATOR)"),
        ("A" * 201, "at most 200"),
    ],
)
def test_names_with_line_breaks_are_rejected(
    tmp_path: Path, store_engine: Engine, cell: str, says: str
) -> None:
    path = jsonl(
        tmp_path / "c.jsonl",
        [
            {"email": "bad@example.com", "first_name": cell},
            {"email": "good@example.com", "first_name": "Ana"},
        ],
    )

    report = import_file(store_engine, "contacts", path, clock=CLOCK)

    assert report.imported == 1 and emails(store_engine) == {"good@example.com"}
    assert str(report.problems[0]).startswith(f"{path}:1: ") and says in str(report.problems[0])


@pytest.mark.parametrize(
    "address",
    [
        "a@x.com,victim@evil.example",
        "Ana <ana@example.com>",
        '"a b"@example.com',
        "ana@example.com\nbcc@evil.example",
        "ana@localhost",
        "üser@example.com",
        "ana@@example.com",
        "ana@exa mple.com",
    ],
)
def test_anything_but_one_plain_address_is_rejected(
    tmp_path: Path, store_engine: Engine, address: str
) -> None:
    path = jsonl(tmp_path / "c.jsonl", [{"email": address}, {"email": "good@example.com"}])

    report = import_file(store_engine, "contacts", path, clock=CLOCK)

    assert report.imported == 1 and emails(store_engine) == {"good@example.com"}
    assert "email: not an email address" in str(report.problems[0])


def test_an_international_domain_is_stored_once_in_ascii_form(tmp_path: Path, store_engine: Engine) -> None:
    path = jsonl(
        tmp_path / "c.jsonl",
        [
            {"email": "Ana@Bücher.DE", "first_name": "Ana"},
            {"email": "ana@xn--bcher-kva.de", "first_name": "Anna"},
        ],
    )

    report = import_file(store_engine, "contacts", path, clock=CLOCK)

    assert (report.imported, report.updated, report.rejected) == (1, 1, 0)
    assert first_names(store_engine) == {"ana@xn--bcher-kva.de": "Anna"}


def test_json_nested_past_the_limit_is_that_rows_problem(tmp_path: Path, store_engine: Engine) -> None:
    path = tmp_path / "e.jsonl"
    lines = [
        json.dumps(event(f"e{n}", {"a": "DEEP"})).replace('"DEEP"', "[" * depth + "]" * depth)
        for n, depth in ((1, 5000), (2, 40), (3, 1))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    report = import_file(store_engine, "events", path, clock=CLOCK)

    assert report.imported == 1
    problems = [str(p) for p in report.problems]
    assert problems[0].startswith(f"{path}:1: ") and "nested" in problems[0]
    # The row is the first level, its payload the second: 31 lists in ``a`` make 33.
    assert problems[1] == f"{path}:2: payload.a{'[0]' * 31}: nested deeper than 32 levels"


@pytest.fixture
def refusing_database(store_engine: Engine) -> Iterator[Engine]:
    """The store with a shop's own rule on ``contact`` that the import's checks cannot know."""
    with store_engine.begin() as conn:
        if store_engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE contact ADD CONSTRAINT shop_rule CHECK (first_name <> 'Refused')"))
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER shop_rule BEFORE INSERT ON contact WHEN NEW.first_name = 'Refused' "
                    "BEGIN SELECT RAISE(ABORT, 'shop_rule: no Refused'); END"
                )
            )
    yield store_engine
    with store_engine.begin() as conn:
        if store_engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE contact DROP CONSTRAINT shop_rule"))
        else:
            conn.execute(text("DROP TRIGGER shop_rule"))


def test_a_row_the_database_refuses_is_rejected_alone_and_its_batch_still_lands(
    tmp_path: Path, refusing_database: Engine
) -> None:
    rows = [{"email": f"c{n}@example.com", "first_name": "Refused" if n == 7 else "Ok"} for n in range(20)]
    path = jsonl(tmp_path / "c.jsonl", rows)

    report = import_file(refusing_database, "contacts", path, clock=CLOCK, batch_size=10)

    assert (report.imported, report.rejected) == (19, 1)
    [problem] = [str(p) for p in report.problems]
    assert problem.startswith(f"{path}:8: the database refused this row: ") and "shop_rule" in problem
    with refusing_database.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CONTACT)).scalar_one() == 19
