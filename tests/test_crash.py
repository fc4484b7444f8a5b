"""Crash recovery: a sender SIGKILLed again and again loses nothing and duplicates at most what was
in flight — at most ``TIDINGS_CONCURRENCY`` messages per kill — with the provider refusing a fifth of
the requests (429, 500, 503), on SQLite and on PostgreSQL.

The full-size figures (5 kills during a 10,000-message send) come from ``bench/crash.py``.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from crash_harness import run_crash_scenario, seed_outbox
from service_checks import PG_ADMIN_URL
from sqlalchemy import create_engine, text

from engine.store import make_engine, upgrade

pytestmark = pytest.mark.slow

ROWS = 600
KILLS = 3
CONCURRENCY = 8


def _database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'tidings.db'}"
    request.getfixturevalue("pg_database_url")  # PostgreSQL is there (mandatory under CI)
    name = f"tidings_crash_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    request.addfinalizer(drop)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_repeated_kills_lose_nothing_and_duplicate_at_most_the_concurrency_each(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _database(kind, tmp_path, request)
    (tmp_path / "var").mkdir()
    engine = make_engine(url)
    upgrade(engine)
    seed_outbox(engine, ROWS)
    engine.dispose()

    report = run_crash_scenario(tmp_path, url, rows=ROWS, kills=KILLS, concurrency=CONCURRENCY)

    print(f"\n{kind}: {report.as_dict()}")
    assert report.lost == 0
    assert report.final_states == {"sent": ROWS}
    assert len(report.exposed_per_kill) == KILLS
    assert all(exposed <= CONCURRENCY for exposed in report.exposed_per_kill)
    assert report.duplicates <= sum(report.exposed_per_kill)
