"""What plan, render and the preview show is exactly what is sent (issue "One truth of a message").

On the shipped workspace and a demo shop: for random contacts of every shipped email campaign and
every locale, the subject, text and HTML from ``plan`` (its first rows, rendered), from
``render --contact --campaign --at`` (the contact view) and from the actual send (the file outbox)
are identical — but for the Date, the Message-ID and, for a coupon flow, the code the flow issues.
"""

from __future__ import annotations

import email
import email.policy
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from engine.channels.outbox import OutboxEmailChannel
from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.render.renderer import Renderer
from engine.runtime.compose import compose_email
from engine.runtime.contact_view import contact_view
from engine.runtime.dispatcher import Dispatcher
from engine.runtime.dry_run import dry_run
from engine.runtime.flows import advance_due
from engine.runtime.message_context import StoredData
from engine.runtime.occurrences import Occurrence, due_occurrences
from engine.runtime.planner import plan_occurrence
from engine.settings import Settings
from engine.store import make_engine, upgrade
from engine.store.models import Contact, Delivery, Enrolment
from engine.workspace.loader import Workspace, load_workspace
from engine.workspace.models import Campaign, SendStep

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
CONTACT = Contact.__table__  # type: ignore[attr-defined]
SEASON = (datetime(2026, 11, 20, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC))
#: Every shipped campaign that plans emails on a schedule (event-triggered ones send per event).
CAMPAIGNS = [
    "holiday-greetings",
    "shipping-deadlines",
    "last-minute-gift-cards",
    "january-exchange-help",
    "january-apology",
    "january-win-back",
]
LOCALES = ["en", "ro", "et"]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The shipped workspace and a 240-contact demo shop, built once; each example copies the store."""
    root = tmp_path_factory.mktemp("shop")
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, root / part)
    (root / "var").mkdir()
    engine = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
    upgrade(engine)
    generate_demo_shop(engine, contacts=240, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    yield root


def settings_for(root: Path, database: Path, outbox: Path) -> Settings:
    return Settings(
        workspace=root,
        database_url=f"sqlite:///{database}",
        secret_key="t" * 40,
        outbox_dir=outbox,
        concurrency=1,
    )


@dataclass
class Message:
    subject: str
    text: str
    html: str


def _normal(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").strip().splitlines())


def _message(subject: str, text: str, html: str) -> Message:
    return Message(subject, _normal(text), _normal(html))


def _sent(path: Path) -> Message:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    plain = parsed.get_body(("plain",))
    rich = parsed.get_body(("html",))
    assert plain is not None and rich is not None
    return _message(str(parsed["Subject"]), plain.get_content(), rich.get_content())


def _first_occurrence(campaign: Campaign, workspace: Workspace, settings: Settings) -> Occurrence:
    found = due_occurrences(campaign, workspace.schedules, *SEASON, default_zone=settings.zone)
    assert found, f"{campaign.key} fires in the season"
    return found[0]


def _send_one(
    engine: Engine,
    workspace: Workspace,
    settings: Settings,
    campaign: Campaign,
    occurrence: Occurrence,
    contact_id: int,
) -> tuple[Message, str | None] | None:
    """Plan the occurrence for real, let the contact's message come due and send it to the file
    outbox; the message as written, and the coupon code a flow issued (None when the gate refused)."""
    clock = FakeClock(occurrence.fire_at)
    plan_occurrence(engine, workspace, campaign, occurrence, clock=clock, settings=settings)
    with engine.connect() as conn:
        wake = conn.execute(
            select(ENROLMENT.c.wake_at).where(
                ENROLMENT.c.campaign_id == campaign.key, ENROLMENT.c.contact_id == contact_id
            )
        ).scalar()
    if wake is not None:  # a flow: the stepper writes the delivery when the contact's time comes
        clock.set(max(wake, clock.now()))
        advance_due(engine, workspace, clock, settings)
    with engine.connect() as conn:
        row = conn.execute(
            select(DELIVERY).where(
                DELIVERY.c.campaign_id == campaign.key, DELIVERY.c.contact_id == contact_id
            )
        ).one()
    clock.set(max(row.scheduled_for, clock.now()))
    outbox = settings.outbox_path
    channel = OutboxEmailChannel.from_settings(settings, now=clock.now, durable=False)
    renderer = Renderer(settings, workspace.templates_dir)
    with Dispatcher(engine, settings, clock, renderer, channel, None, workspace) as dispatcher:
        stats = dispatcher.drain(ids=[row.id])
    if stats.sent != 1:
        return None
    (path,) = list((outbox / "email").rglob("*.eml"))
    coupon = (row.context or {}).get("coupon")
    return _sent(path), (coupon or {}).get("code")


@settings(
    max_examples=24,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(campaign_id=st.sampled_from(CAMPAIGNS), locale=st.sampled_from(LOCALES), pick=st.integers(0, 10**6))
def test_plan_render_and_the_send_show_the_same_message(
    shop: Path, campaign_id: str, locale: str, pick: int
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        database = Path(scratch) / "tidings.db"
        shutil.copy(shop / "var" / "tidings.db", database)
        settings = settings_for(shop, database, Path(scratch) / "outbox")
        workspace = load_workspace(shop, default_timezone=settings.timezone).workspace
        campaign = workspace.campaigns[campaign_id]
        occurrence = _first_occurrence(campaign, workspace, settings)
        engine = make_engine(f"sqlite:///{database}")
        try:
            with engine.connect() as conn:
                planned = dry_run(
                    conn,
                    workspace,
                    campaign,
                    occurrence,
                    settings=settings,
                    now=occurrence.fire_at,
                    sample=500,
                )
            rows = [r for r in planned.first_rows if (r.locale or "en").split("-")[0] == locale]
            if not rows:
                event("nobody of this locale in the audience")
                return
            row = rows[pick % len(rows)]
            step = next(s for s in campaign.iter_steps() if isinstance(s, SendStep))
            template = row.template or step.send.templates[0]
            renderer = Renderer(settings, workspace.templates_dir)
            marketing = campaign.category.value == "marketing"
            with engine.connect() as conn:
                view = contact_view(
                    conn,
                    workspace,
                    campaign,
                    template,
                    row.contact_id,
                    settings=settings,
                    now=occurrence.fire_at,
                    at=row.scheduled_for,
                )
                data = StoredData.load(conn, [row.contact_id])
            facts = view.facts if view.facts.coupon is not None else row.facts
            from_plan = compose_email(
                renderer,
                settings,
                campaign,
                template=template,
                step_id=step.step_id,
                contact_id=row.contact_id,
                locale=row.locale,
                marketing=marketing,
                facts=facts,
                data=data,
                now=row.scheduled_for,
            )
            from_render = compose_email(
                renderer,
                settings,
                campaign,
                template=template,
                step_id=step.step_id,
                contact_id=row.contact_id,
                locale=None,
                marketing=marketing,
                facts=view.facts,
                data=view.data,
                now=view.now,
            )
            sent = _send_one(engine, workspace, settings, campaign, occurrence, row.contact_id)
        finally:
            engine.dispose()
    assert view.plan.instant == row.scheduled_for
    assert view.facts.cutoff == row.facts.cutoff and view.facts.zone == row.facts.zone
    plan_message = _message(from_plan.subject, from_plan.text, from_plan.html)
    render_message = _message(from_render.subject, from_render.text, from_render.html)
    assert plan_message == render_message
    if sent is None:
        event("the gate refused the send (frequency cap)")
        return
    event(f"compared with the send: {campaign_id}")
    message, issued = sent
    if issued is not None:  # a coupon flow: plan and render show the placeholder for the code it issues
        placeholder = view.facts.coupon.code if view.facts.coupon is not None else ""
        message = Message(
            *(part.replace(issued, placeholder) for part in (message.subject, message.text, message.html))
        )
    assert message == plan_message


@pytest.fixture
def store(shop: Path, tmp_path: Path) -> Iterator[tuple[Engine, Settings, Workspace]]:
    database = tmp_path / "tidings.db"
    shutil.copy(shop / "var" / "tidings.db", database)
    settings = settings_for(shop, database, tmp_path / "outbox")
    engine = make_engine(f"sqlite:///{database}")
    yield engine, settings, load_workspace(shop, default_timezone=settings.timezone).workspace
    engine.dispose()


@pytest.mark.parametrize(
    ("country", "zone", "cutoff_local"),
    [
        ("EE", "Europe/Tallinn", "12:00 PM"),
        ("RO", "Europe/Bucharest", "4:00 PM"),
        ("US", "America/New_York", "5:00 PM"),
    ],
)
def test_a_contact_without_a_zone_sees_the_cutoff_in_their_countrys_time_everywhere(
    store: tuple[Engine, Settings, Workspace], country: str, zone: str, cutoff_local: str
) -> None:
    engine, settings, workspace = store
    campaign = workspace.campaigns["shipping-deadlines"]
    occurrence = _first_occurrence(campaign, workspace, settings)
    with engine.connect() as conn:
        planned = dry_run(
            conn, workspace, campaign, occurrence, settings=settings, now=occurrence.fire_at, sample=500
        )
        countries = dict(conn.execute(select(CONTACT.c.id, CONTACT.c.country)).all())
    # A contact of that country the reminder reaches, their zone and locale cleared/set as an import
    # from a shop would leave them: no zone, English.
    contact_id = next(r.contact_id for r in planned.first_rows if countries[r.contact_id] == country)
    with engine.begin() as conn:
        conn.execute(update(CONTACT).where(CONTACT.c.id == contact_id).values(timezone=None, locale="en"))
    with engine.connect() as conn:
        planned = dry_run(
            conn, workspace, campaign, occurrence, settings=settings, now=occurrence.fire_at, sample=500
        )
    (row,) = [r for r in planned.first_rows if r.contact_id == contact_id]
    assert row.facts.zone == zone and row.timezone == zone
    assert row.scheduled_for.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "09:00"
    renderer = Renderer(settings, workspace.templates_dir)
    with engine.connect() as conn:
        view = contact_view(
            conn,
            workspace,
            campaign,
            "shipping-reminder",
            contact_id,
            settings=settings,
            now=occurrence.fire_at,
        )
    assert view.facts.zone == zone and view.context(settings)["contact"].timezone == zone
    message = compose_email(
        renderer,
        settings,
        campaign,
        template="shipping-reminder",
        step_id="reminder",
        contact_id=contact_id,
        locale="en",
        marketing=True,
        facts=view.facts,
        data=view.data,
        now=view.now,
    )
    assert cutoff_local in message.text
    sent = _send_one(engine, workspace, settings, campaign, occurrence, contact_id)
    assert sent is not None and cutoff_local in sent[0].text
