"""Shared fixtures: real databases (a SQLite file; PostgreSQL on 127.0.0.1 when available), fake clocks.

Services: under CI=true the PostgreSQL and Redis tests must run; elsewhere they skip with
a message saying which service was missing.

Property tests (hypothesis): under CI=true the ``ci`` profile runs them *derandomized* and
without an example database, so a run's verdict depends on the code alone — the same
examples on every machine, every time, and nothing carried over from an earlier run. Known
hostile inputs are pinned with ``@example`` in the tests themselves, so they run everywhere.
Elsewhere the ``dev`` profile draws fresh random examples each run and keeps the failures it
finds in ``.hypothesis/`` (git-ignored) to replay them first next time: exploration on a
laptop, reproducibility in CI. ``HYPOTHESIS_PROFILE=ci`` picks the CI profile by hand.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from service_checks import IN_CI, PG_ADMIN_URL, REDIS_URL, pg_available, redis_available, require_service
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.store import make_engine, upgrade
from engine.store.models import ALL_TABLES, COORDINATION_TABLES

__all__ = ["IN_CI", "PG_ADMIN_URL", "REDIS_URL", "redis_available", "require_service"]

hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("dev")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    require_service(pg_available(), "PostgreSQL")
    name = f"tidings_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    migrated = make_engine(url)
    upgrade(migrated)
    migrated.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate(engine: Engine) -> None:
    names = ", ".join(f'"{table.__tablename__}"' for table in [*ALL_TABLES, *COORDINATION_TABLES])
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'tidings.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_database_url)
    _truncate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on a SQLite file and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    return request.getfixturevalue(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))


@pytest.fixture
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TIDINGS_* variable from the environment, and no stray ``.env`` (the working folder is tmp_path)."""
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
