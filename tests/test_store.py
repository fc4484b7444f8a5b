"""The store: migrations are idempotent, times stay aware, contact rows are validated."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import StatementError

from engine.cli import main
from engine.store import current_revision, upgrade
from engine.store.migrate import head_revision
from engine.store.models import Contact


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_db_upgrade_twice_creates_then_reports_up_to_date(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["--workspace", str(tmp_path), "db", "upgrade"]) == 0
    first = capsys.readouterr().out
    assert main(["--workspace", str(tmp_path), "db", "upgrade"]) == 0
    second = capsys.readouterr().out
    assert "migrated from empty" in first
    assert "up to date" in second and str(head_revision()) in second


def test_upgrade_is_idempotent_on_every_store(store_engine: Engine) -> None:
    assert upgrade(store_engine) == (head_revision(), head_revision())
    assert current_revision(store_engine) == head_revision()


def test_unreachable_database_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert main(["--workspace", str(tmp_path), "db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "database unreachable" in err


def test_times_come_back_aware_and_in_utc(store_engine: Engine) -> None:
    local = datetime(2026, 12, 24, 18, 30, tzinfo=ZoneInfo("Europe/Bucharest"))
    table = Contact.__table__  # type: ignore[attr-defined]
    with store_engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    "email": "ana@example.com",
                    "tags": [],
                    "attributes": {},
                    "total_spent": 0,
                    "first_seen_at": local,
                }
            ],
        )
        stored = conn.execute(select(table.c.first_seen_at)).scalar_one()
    assert stored == local
    assert stored.utcoffset().total_seconds() == 0


def test_store_refuses_naive_times(store_engine: Engine) -> None:
    table = Contact.__table__  # type: ignore[attr-defined]
    with pytest.raises(StatementError, match="naive datetime"), store_engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    "email": "ana@example.com",
                    "tags": [],
                    "attributes": {},
                    "total_spent": 0,
                    "first_seen_at": datetime(2026, 12, 1),
                }
            ],
        )


def test_contact_email_is_stored_lower_cased() -> None:
    contact = Contact.model_validate({"email": "  Ana.Pop@Example.COM ", "country": "ro"})
    assert contact.email == "ana.pop@example.com"
    assert contact.country == "RO"


def test_contact_with_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="Mars/Olympus"):
        Contact.model_validate({"email": "ana@example.com", "timezone": "Mars/Olympus"})


def test_json_columns_keep_lists_and_objects(store_engine: Engine) -> None:
    table = Contact.__table__  # type: ignore[attr-defined]
    with store_engine.begin() as conn:
        conn.execute(
            insert(table),
            [
                {
                    "email": "a@example.com",
                    "tags": ["vip", "newsletter"],
                    "attributes": {"birthday_month": 12},
                    "total_spent": 0,
                }
            ],
        )
        tags, attributes = conn.execute(select(table.c.tags, table.c.attributes)).one()
    assert tags == ["vip", "newsletter"]
    assert attributes == {"birthday_month": 12}
