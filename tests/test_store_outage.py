"""A lost database connection is one log line per incident, a reconnect, and no traceback.

PostgreSQL is reached through a TCP proxy on 127.0.0.1 that the tests cut and restore, as a
restart or a network failure would; the server itself keeps running for the other tests.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator

import pytest
from servers.tcp_proxy import TcpProxy
from service_checks import PG_ADMIN_URL
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from engine.logs import configure_logging
from engine.store import make_engine
from engine.store.outage import OneLineDatabaseErrors, Reconnecting, connection_lost

pytestmark = pytest.mark.postgres


@pytest.fixture
def proxied(pg_database_url: str) -> Iterator[tuple[TcpProxy, Engine]]:
    url = make_url(pg_database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        engine = make_engine(url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False))
        yield proxy, engine
        engine.dispose()


def select_one(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT 1")).scalar_one())


class RestoreOnWarning(logging.Handler):
    """Brings the server back the moment the outage has been logged: no waiting in the test."""

    def __init__(self, proxy: TcpProxy) -> None:
        super().__init__(logging.WARNING)
        self.proxy = proxy

    def emit(self, record: logging.LogRecord) -> None:
        self.proxy.restore()


def test_an_outage_is_one_line_then_a_reconnect_and_the_work_goes_through(
    proxied: tuple[TcpProxy, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, engine = proxied
    tick = Reconnecting("runtime tick", first_delay=0.05)
    assert tick.run(lambda: select_one(engine)) == 1
    proxy.cut()
    restorer = RestoreOnWarning(proxy)
    logging.getLogger("tidings.store").addHandler(restorer)
    caplog.set_level(logging.INFO, logger="tidings.store")
    try:
        assert tick.run(lambda: select_one(engine)) == 1
    finally:
        logging.getLogger("tidings.store").removeHandler(restorer)

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "tidings.store"]
    assert len(lines) == 2
    assert lines[0][0] == "WARNING" and lines[0][1].startswith("database connection lost: ")
    assert lines[0][1].endswith("; retrying in 0.05 s (runtime tick)")
    assert lines[1][0] == "INFO" and lines[1][1].startswith("database connection back after ")
    assert all(record.exc_info is None for record in caplog.records)
    assert tick.connected


def test_retries_during_one_incident_log_nothing_more(
    proxied: tuple[TcpProxy, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    proxy, engine = proxied
    tick = Reconnecting("drain", first_delay=0.01, max_delay=0.02)
    proxy.cut()
    calls = 0

    def work() -> int:
        nonlocal calls
        calls += 1
        if calls == 5:
            proxy.restore()
        return select_one(engine)

    caplog.set_level(logging.INFO, logger="tidings.store")
    assert tick.run(work) == 1

    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert calls >= 5 and len(warnings) == 1


def test_connections_the_server_killed_are_replaced_at_checkout_without_a_word(
    pg_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    assert select_one(pg_engine) == 1  # a pooled connection now exists
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        database = pg_engine.url.database
        others = "SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS backends"), {"d": database})
    admin.dispose()
    caplog.set_level(logging.INFO)

    assert Reconnecting("tick").run(lambda: select_one(pg_engine)) == 1
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]


def test_a_stop_during_the_wait_ends_the_retries(proxied: tuple[TcpProxy, Engine]) -> None:
    proxy, engine = proxied
    proxy.cut()
    stop = threading.Event()
    tick = Reconnecting("tick", first_delay=60)

    class StopOnWarning(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stop.set()

    handler = StopOnWarning(logging.WARNING)
    logging.getLogger("tidings.store").addHandler(handler)
    try:
        assert tick.run(lambda: select_one(engine), stop=stop) is None
    finally:
        logging.getLogger("tidings.store").removeHandler(handler)
    assert not tick.connected and tick.reason


def test_other_database_errors_are_not_connection_losses(pg_engine: Engine) -> None:
    with pg_engine.begin() as conn:
        conn.execute(text("CREATE TEMP TABLE once (id int primary key)"))
        conn.execute(text("INSERT INTO once VALUES (1)"))
        with pytest.raises(IntegrityError) as caught:
            conn.execute(text("INSERT INTO once VALUES (1)"))
    assert not connection_lost(caught.value)
    with pytest.raises(IntegrityError):
        Reconnecting("tick").run(lambda: (_ for _ in ()).throw(caught.value))


def test_a_library_logging_a_lost_connection_writes_one_line_without_a_traceback(
    proxied: tuple[TcpProxy, Engine], capfd: pytest.CaptureFixture[str]
) -> None:
    proxy, engine = proxied
    proxy.cut()
    configure_logging("text", "INFO", filters=[OneLineDatabaseErrors()])  # as every command does
    logger = logging.getLogger("apscheduler.jobstores.test")
    try:
        select_one(engine)
    except OperationalError:
        logger.exception("Error getting due jobs from job store 'default'")
    try:
        raise IntegrityError("INSERT", {}, Exception("duplicate key"))
    except IntegrityError:
        logger.exception("a real bug")

    err = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert re.fullmatch(
        r"\S+ ERROR +apscheduler\.jobstores\.test: Error getting due jobs from job store 'default': "
        r"database connection lost: .+",
        err[0],
    )
    assert re.fullmatch(r"\S+ ERROR +apscheduler\.jobstores\.test: a real bug", err[1])
    assert err[2] == "Traceback (most recent call last):"  # what is not an outage keeps its traceback
