"""Which services the tests can reach, and the rule for when they cannot.

Under CI=true the PostgreSQL, Redis and browser tests must run (a missing service fails them);
on a laptop without the service they skip with a message saying what to start. A module of
its own (not conftest) so that test modules anywhere under tests/ can import it by name.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_ADMIN_URL = os.environ.get("TIDINGS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TIDINGS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_service(available: bool, what: str) -> None:
    """Skip when a service is missing on a laptop; fail under CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true but is not reachable", pytrace=False)
    pytest.skip(f"{what} not reachable on 127.0.0.1 — start it to run this test")


def pg_available() -> bool:
    try:
        probe = create_engine(PG_ADMIN_URL, pool_pre_ping=True)
        with probe.connect() as conn:
            conn.execute(text("SELECT 1"))
        probe.dispose()
        return True
    except Exception:
        return False


def redis_available() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False
