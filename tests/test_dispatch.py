"""The dispatcher against a SendGrid-compatible server through the real sendgrid client."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from servers.sendgrid_server import SendGridServer, bad_request, rate_limited, server_error, slow
from sqlalchemy.engine import Engine
from test_dispatch_helpers import add_contact, add_delivery, add_suppression, delivery_rows
from test_dispatch_support import campaign, workspace, write_templates

from engine.channels.factory import email_channel_for
from engine.clock import FakeClock
from engine.render.renderer import Renderer
from engine.runtime.controls import pause, resume
from engine.runtime.dispatcher import Dispatcher
from engine.settings import Settings
from engine.workspace.models import Campaign

SECRET = "k" * 40


@pytest.fixture
def sendgrid() -> Iterator[SendGridServer]:
    with SendGridServer() as server:
        yield server


def make_settings(tmp_path: Path, sendgrid: SendGridServer, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": tmp_path,
        "email_channel": "sendgrid",
        "public_url": "https://shop.example.com",
        "sendgrid_api_key": sendgrid.api_key,
        "sendgrid_host": sendgrid.host,
        "sendgrid_timeout_seconds": 2,
        "secret_key": SECRET,
        "concurrency": 4,
        "email_rate_per_second": 10_000,
    }
    values.update(extra)
    return Settings(**values)


def make_dispatcher(
    engine: Engine, settings: Settings, clock: FakeClock, campaigns: list[Campaign], tmp_path: Path
) -> Dispatcher:
    write_templates(tmp_path)
    renderer = Renderer(settings, tmp_path / "templates")
    channel = email_channel_for(settings, now=clock.now)
    return Dispatcher(
        engine,
        settings,
        clock,
        renderer,
        channel,
        None,
        workspace(*campaigns, root=tmp_path),
        worker_id="w1",
        rng=random.Random(5),
    )


def accepted_by_delivery(server: SendGridServer) -> Counter[str]:
    return Counter(mail.body["personalizations"][0]["custom_args"]["delivery_id"] for mail in server.accepted)


def test_each_due_message_is_sent_once_to_its_own_recipient_with_tracking_headers(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    ids = {}
    for name in ("ana", "ben", "cleo"):
        contact = add_contact(store_engine, f"{name}@example.com", now=now, first_name=name.title())
        ids[name] = add_delivery(store_engine, contact, now=now)
    settings = make_settings(tmp_path, sendgrid)
    with make_dispatcher(store_engine, settings, clock, [campaign()], tmp_path) as dispatcher:
        stats = dispatcher.drain()
        assert (stats.claimed, stats.sent) == (3, 3)
        assert dispatcher.drain().claimed == 0
    assert sorted(accepted_by_delivery(sendgrid).values()) == [1, 1, 1]
    for mail in sendgrid.accepted:
        personal = mail.body["personalizations"][0]
        name = personal["to"][0]["email"].split("@")[0]
        assert mail.body["subject"] == f"Happy holidays, {name.title()}"
        assert personal["custom_args"]["delivery_id"] == str(ids[name])
        assert personal["custom_args"]["campaign_id"] == "holiday"
        assert personal["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert mail.body["headers"]["X-Tidings-Delivery"] == str(ids[name])
    rows = delivery_rows(store_engine)
    assert all(
        row.state == "sent" and row.provider_message_id and row.sent_at == now for row in rows.values()
    )


def test_message_that_fails_to_render_is_failed_and_never_sent(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    row = add_delivery(store_engine, contact, now=clock.now(), template="broken")
    with make_dispatcher(store_engine, make_settings(tmp_path, sendgrid), clock, [campaign()], tmp_path) as d:
        assert d.drain().failed == 1
    stored = delivery_rows(store_engine)[row]
    assert (stored.state, stored.reason) == ("failed", "render_error")
    assert "no_such_filter" in stored.last_error
    assert sendgrid.accepted == []


def test_a_template_over_the_render_budget_fails_its_rows_and_the_other_sends_go_out(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    templates = write_templates(tmp_path)
    greeting = (templates / "greeting" / "email.mjml").read_text()
    hostile = templates / "hostile" / "email.mjml"
    hostile.parent.mkdir()
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"
    hostile.write_text(greeting.replace("</mj-text>", loops + "</mj-text>", 1))
    rows = []
    for n in range(6):
        contact = add_contact(store_engine, f"c{n}@example.com", now=clock.now())
        rows.append(
            add_delivery(store_engine, contact, now=clock.now(), template="hostile" if n % 2 else "greeting")
        )

    with make_dispatcher(store_engine, make_settings(tmp_path, sendgrid), clock, [campaign()], tmp_path) as d:
        stats = d.drain()

    assert (stats.sent, stats.failed) == (3, 3)
    stored = delivery_rows(store_engine)
    for n, row in enumerate(rows):
        if n % 2:
            assert (stored[row].state, stored[row].reason) == ("failed", "render_error")
            assert (
                "hostile/email.mjml:" in stored[row].last_error
                and "loop iterations" in stored[row].last_error
            )
        else:
            assert stored[row].state == "sent"


def test_permanent_error_is_recorded_with_the_providers_message_and_not_retried(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    row = add_delivery(store_engine, contact, now=clock.now())
    sendgrid.faults.script(bad_request("The from address does not match a verified Sender Identity"))
    with make_dispatcher(store_engine, make_settings(tmp_path, sendgrid), clock, [campaign()], tmp_path) as d:
        d.drain()
        clock.advance(timedelta(hours=2))
        assert d.drain().claimed == 0
    stored = delivery_rows(store_engine)[row]
    assert (stored.state, stored.reason, stored.attempts) == ("failed", "permanent", 1)
    assert "verified Sender Identity" in stored.last_error
    assert len(sendgrid.exchanges) == 1


def test_rate_limited_send_waits_for_the_providers_reset(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    contact = add_contact(store_engine, "a@example.com", now=clock.now())
    row = add_delivery(store_engine, contact, now=clock.now())
    sendgrid.faults.script(rate_limited(retry_after=120))
    with make_dispatcher(store_engine, make_settings(tmp_path, sendgrid), clock, [campaign()], tmp_path) as d:
        assert d.drain().retried == 1
        assert delivery_rows(store_engine)[row].scheduled_for >= clock.now() + timedelta(seconds=120)
        clock.advance(100)
        assert d.drain().claimed == 0
        clock.advance(30)
        assert d.drain().sent == 1
    assert delivery_rows(store_engine)[row].attempts == 2


def test_with_a_fifth_of_sends_failing_every_message_is_delivered_exactly_once(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    rows = [
        add_delivery(store_engine, add_contact(store_engine, f"c{i}@example.com", now=now), now=now)
        for i in range(40)
    ]
    sendgrid.faults.randomly(
        0.2, rate_limited(retry_after=30), server_error(500), server_error(503), slow(0.6), seed=11
    )
    settings = make_settings(tmp_path, sendgrid, sendgrid_timeout_seconds=0.3, max_attempts=20)
    with make_dispatcher(store_engine, settings, clock, [campaign()], tmp_path) as dispatcher:
        for _ in range(60):
            dispatcher.drain()
            if all(r.state == "sent" for r in delivery_rows(store_engine).values()):
                break
            clock.advance(timedelta(minutes=1))
    stored = delivery_rows(store_engine)
    assert all(stored[r].state == "sent" for r in rows)
    counts = accepted_by_delivery(sendgrid)
    # A timeout may hit after the server accepted: those (and only those) can arrive twice.
    timeouts = sum(1 for _request, reply in sendgrid.exchanges if reply.status == 202) - len(rows)
    assert set(counts) == {str(r) for r in rows}
    assert sum(counts.values()) - len(rows) == timeouts
    assert any(stored[r].attempts > 1 for r in rows)


def test_skipped_contacts_get_a_named_reason(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    ok = add_delivery(store_engine, add_contact(store_engine, "ok@example.com", now=now), now=now)
    silent = add_delivery(
        store_engine, add_contact(store_engine, "s@example.com", now=now, consent=()), now=now
    )
    unsub = add_delivery(store_engine, add_contact(store_engine, "u@example.com", now=now), now=now)
    add_suppression(store_engine, "u@example.com", "unsubscribe", now=now, channel="email")
    receipt = add_delivery(
        store_engine,
        add_contact(store_engine, "u2@example.com", now=now, consent=()),
        now=now,
        campaign="gift",
        template="receipt",
        category="transactional",
    )
    add_suppression(store_engine, "u2@example.com", "unsubscribe", now=now, channel="email")
    bounced = add_delivery(
        store_engine,
        add_contact(store_engine, "b@example.com", now=now),
        now=now,
        campaign="gift",
        template="receipt",
        category="transactional",
    )
    add_suppression(store_engine, "b@example.com", "hard_bounce", now=now)
    campaigns = [
        campaign(),
        campaign("gift", category="transactional", steps=[{"send": {"template": "receipt"}}]),
    ]
    with make_dispatcher(store_engine, make_settings(tmp_path, sendgrid), clock, campaigns, tmp_path) as d:
        d.drain()
    stored = delivery_rows(store_engine)
    assert {
        key: (stored[key].state, stored[key].reason) for key in (ok, silent, unsub, receipt, bounced)
    } == {
        ok: ("sent", None),
        silent: ("skipped", "no_consent"),
        unsub: ("skipped", "suppressed:unsubscribe"),
        receipt: ("sent", None),
        bounced: ("skipped", "suppressed:hard_bounce"),
    }
    assert sorted(m.body["personalizations"][0]["to"][0]["email"] for m in sendgrid.accepted) == [
        "ok@example.com",
        "u2@example.com",
    ]


def test_frequency_cap_skips_what_exceeds_it_across_campaigns(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    contact = add_contact(store_engine, "a@example.com", now=now)
    add_delivery(
        store_engine, contact, now=now, campaign="earlier", state="sent", sent_at=now - timedelta(days=1)
    )
    capped = add_delivery(store_engine, contact, now=now)
    limits = {"frequency_cap": {"max": 1, "per": "7d"}}
    with make_dispatcher(
        store_engine, make_settings(tmp_path, sendgrid), clock, [campaign(limits=limits)], tmp_path
    ) as d:
        d.drain()
    assert delivery_rows(store_engine)[capped].reason == "frequency_cap"


def test_quiet_hours_hold_the_message_until_the_contacts_morning(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    clock.set(clock.now().replace(hour=20, minute=30))  # 22:30 in Tallinn
    now = clock.now()
    row = add_delivery(store_engine, add_contact(store_engine, "a@example.com", now=now), now=now)
    limits = {"quiet_hours": {"start": "21:00", "end": "08:00", "action": "delay"}}
    with make_dispatcher(
        store_engine, make_settings(tmp_path, sendgrid), clock, [campaign(limits=limits)], tmp_path
    ) as d:
        assert d.drain().deferred == 1
        stored = delivery_rows(store_engine)[row]
        assert (stored.state, stored.reason) == ("pending", "quiet_hours")
        assert stored.scheduled_for == now.replace(day=now.day + 1, hour=6, minute=0)  # 08:00 Tallinn
        clock.set(stored.scheduled_for)
        assert d.drain().sent == 1
    assert len(sendgrid.accepted) == 1


def test_pause_keeps_rows_pending_and_resume_sends_the_rest_without_resending(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    rows = [
        add_delivery(store_engine, add_contact(store_engine, f"c{i}@example.com", now=now), now=now)
        for i in range(6)
    ]
    settings = make_settings(tmp_path, sendgrid, batch_size=2)
    with make_dispatcher(store_engine, settings, clock, [campaign()], tmp_path) as dispatcher:
        assert dispatcher.run_once().sent == 2
        pause(store_engine, "holiday", clock)
        assert dispatcher.drain().claimed == 0
        assert Counter(r.state for r in delivery_rows(store_engine).values()) == {"sent": 2, "pending": 4}
        resume(store_engine, "holiday", clock)
        assert dispatcher.drain().sent == 4
    assert sorted(accepted_by_delivery(sendgrid).values()) == [1] * 6
    assert set(accepted_by_delivery(sendgrid)) == {str(r) for r in rows}


def test_draft_campaign_never_sends(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    row = add_delivery(
        store_engine, add_contact(store_engine, "a@example.com", now=clock.now()), now=clock.now()
    )
    with make_dispatcher(
        store_engine, make_settings(tmp_path, sendgrid), clock, [campaign(status="draft")], tmp_path
    ) as d:
        assert d.drain().claimed == 0
    assert delivery_rows(store_engine)[row].state == "pending" and sendgrid.accepted == []


def test_email_rate_limit_spreads_sends_over_the_clock(
    store_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    for i in range(5):
        add_delivery(store_engine, add_contact(store_engine, f"c{i}@example.com", now=now), now=now)
    settings = make_settings(tmp_path, sendgrid, email_rate_per_second=2)
    with make_dispatcher(store_engine, settings, clock, [campaign()], tmp_path) as dispatcher:
        first = dispatcher.drain()
        assert first.sent == 2 and first.wait_seconds == pytest.approx(0.5)
        clock.advance(1)
        assert dispatcher.drain().sent == 2
        clock.advance(1)
        assert dispatcher.drain().sent == 1


@pytest.mark.postgres
def test_two_dispatchers_on_one_postgres_outbox_never_send_a_row_twice(
    pg_engine: Engine, clock: FakeClock, tmp_path: Path, sendgrid: SendGridServer
) -> None:
    now = clock.now()
    rows = [
        add_delivery(pg_engine, add_contact(pg_engine, f"c{i}@example.com", now=now), now=now)
        for i in range(80)
    ]
    settings = make_settings(tmp_path, sendgrid, batch_size=5)
    renderer = Renderer(settings, write_templates(tmp_path))
    workers = [
        Dispatcher(
            pg_engine,
            settings,
            clock,
            renderer,
            email_channel_for(settings, now=clock.now),
            None,
            workspace(campaign(), root=tmp_path),
            worker_id=f"w{i}",
        )
        for i in range(2)
    ]
    results: list[int] = [0, 0]

    def run(index: int) -> None:
        results[index] = workers[index].drain().sent

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in workers:
        worker.close()
    assert sum(results) == 80 and all(results)
    assert sorted(accepted_by_delivery(sendgrid).values()) == [1] * 80
    assert set(accepted_by_delivery(sendgrid)) == {str(r) for r in rows}
