"""What ``validate`` accepts, the season sends: no render error, no expression exit, for anyone.

The invariant of "Catch it while writing": a marketer's files that ``validate`` passes never fail
at send time for a reason those files contain. Hypothesis mutates a shipped campaign or one of its
templates — a context name or a misspelt one, arithmetic mixing amounts and floats, a guarded or
unguarded optional record, a broken MJML tag, a link, a deleted locale file, a flow condition, a
forced language — then runs ``validate`` (with the demo store, as a shop would) and, when it
passes, the whole season through the simulator (the daemon on a simulated clock). Every message
of the season must render and every expression evaluate.

CI-sized: a 40-contact demo shop, one campaign (and what it needs) per example, a few examples.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from validate_support import shipped

from engine.cli import main
from engine.cli.context import STATE
from engine.clock import FakeClock, SystemClock
from engine.demo.load import generate_demo_shop
from engine.settings import Settings
from engine.simulation import SimulationOptions, simulate
from engine.store import make_engine, upgrade
from engine.store.models import Delivery, Enrolment
from engine.workspace.loader import load_campaign_file, load_workspace

pytestmark = pytest.mark.slow

DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ENROLMENT = Enrolment.__table__  # type: ignore[attr-defined]
CAMPAIGNS = (
    "gift-card-follow-up",
    "gift-card-welcome",
    "holiday-greetings",
    "shipping-deadlines",
    "january-apology",
    "return-received",
)
#: Template expressions a marketer might write: names and fields of the context, misspellings,
#: amounts mixed with floats, optional records guarded or not.
EXPRESSIONS = (
    "{{ contact.first_name }}",
    "{{ contact.frist_name }}",
    "{{ contact.orders_count + 1 }}",
    "{{ contact.total_spent * 1.1 }}",
    "{{ contact.total_spent * 2 }}",
    "{{ order.number }}",
    "{% if order %}{{ order.number }}{% endif %}",
    "{{ order.total|money(order.currency) }}",
    "{{ gift_card.balance|money(gift_card.currency) }}",
    "{% if gift_card %}{{ gift_card.amount / 2 }}{% endif %}",
    "{{ coupon.code }}",
    "{{ event.data.order_id }}",
    "{{ cutoff.order_by|date('long') }}",
    "{{ trigger_date|date('long') }}",
    "{{ shop.support.email }}",
    "{{ unknown_name }}",
    "{{ now|date('long') }}",
)
CONDITIONS = (
    "gift_card and gift_card.balance > 0",
    "gift_card.balance > 0",
    "order and gift_card and order.total >= gift_card.amount * 1.15",
    "order and gift_card and order.total >= gift_card.amount * 115 / 100",
    "order.total > 100",
    "contact.orders_count == 0",
    "contact.frist_name",
    "not contact.first_name",
    "days_until(now) == 0",
)
LINKS = ("htp:/broken link", "http://example.com/sale", "https://example.com/sale", "mailto:care@example.com")


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    database = tmp_path_factory.mktemp("demo") / "tidings.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    generate_demo_shop(engine, contacts=40, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()
    return database


@pytest.fixture
def early_december() -> Iterator[None]:
    STATE.clock = FakeClock(datetime(2026, 12, 5, 9, 0, tzinfo=UTC))
    yield
    STATE.clock = SystemClock()


@dataclass(frozen=True)
class Mutation:
    """One change to the files, described for hypothesis' report."""

    campaign: str
    kind: str
    target: str
    value: str

    def apply(self, root: Path) -> None:
        path = root / self.target
        text = path.read_text(encoding="utf-8")
        if self.kind == "delete":
            path.unlink()
        elif self.kind == "expression":
            path.write_text(text.replace("</mj-text>", f" {self.value}</mj-text>", 1), encoding="utf-8")
        elif self.kind == "tag":
            old, new = self.value.split("→")
            path.write_text(text.replace(old, new, 1), encoding="utf-8")
        elif self.kind == "link":
            start = text.find('href="')
            end = text.find('"', start + 6)
            if start >= 0:
                path.write_text(text[: start + 6] + self.value + text[end:], encoding="utf-8")
        elif self.kind == "condition":
            lines = text.splitlines()
            for index, line in enumerate(lines):
                stripped = line.lstrip()
                key = next((k for k in ("- if: ", "where: ") if stripped.startswith(k)), None)
                if key is not None:
                    lines[index] = f'{line[: len(line) - len(stripped)]}{key}"{self.value}"'
                    break
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        elif self.kind == "locale":
            path.write_text(
                text.replace("status: active\n", f"status: active\nlocale: {self.value}\n"), encoding="utf-8"
            )


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    campaign = draw(st.sampled_from(CAMPAIGNS))
    source = Path(__file__).resolve().parents[1]
    loaded, _problems = load_campaign_file(source / "campaigns" / f"{campaign}.yaml")
    assert loaded is not None
    template = draw(st.sampled_from(sorted(loaded.templates_used())))
    files = sorted(p.name for p in (source / "templates" / template).glob("email*.mjml"))
    target = f"templates/{template}/{draw(st.sampled_from(files))}"
    kind = draw(st.sampled_from(("expression", "expression", "tag", "link", "delete", "condition", "locale")))
    if kind == "expression":
        return Mutation(campaign, kind, target, draw(st.sampled_from(EXPRESSIONS)))
    if kind == "tag":
        change = draw(
            st.sampled_from(
                (
                    "<mj-text→<mj-txt",
                    "</mj-column>→</mj-colum>",
                    '<mj-text→<mj-text colour="red"',
                    "</mj-section>→",
                )
            )
        )
        return Mutation(campaign, kind, target, change)
    if kind == "link":
        return Mutation(campaign, kind, target, draw(st.sampled_from(LINKS)))
    if kind == "delete":
        return Mutation(campaign, kind, target, "")
    campaign_file = f"campaigns/{campaign}.yaml"
    if kind == "condition":
        return Mutation(campaign, kind, campaign_file, draw(st.sampled_from(CONDITIONS)))
    return Mutation(campaign, kind, campaign_file, draw(st.sampled_from(("ro", "[et, ro]", "de"))))


class _Failures(logging.Handler):
    """Expression failures the runtime only logs (an event trigger's where)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.mark.usefixtures("early_december")
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=mutations())
def test_what_validate_accepts_renders_and_evaluates_for_every_contact_of_the_season(
    demo_store: Path, mutation: Mutation
) -> None:
    with tempfile.TemporaryDirectory(prefix="tidings-property-") as folder:
        root = shipped(Path(folder) / "shop", mutation.campaign)
        mutation.apply(root)
        (root / "var").mkdir()
        shutil.copy(demo_store, root / "var" / "tidings.db")

        if main(["--workspace", str(root), "validate"]) != 0:
            return  # refused: nothing to send

        live = Settings(workspace=root, secret_key="p" * 40)
        workspace = load_workspace(root, default_timezone=live.timezone).workspace
        source = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
        failures = _Failures()
        enrolment_log = logging.getLogger("engine.runtime.enrolment")
        enrolment_log.addHandler(failures)
        try:
            options = SimulationOptions(
                date(2026, 12, 1), date(2027, 1, 31), root / "var" / "sim", root / "var" / "sim-outbox"
            )
            simulate(live, source, workspace, options)
        finally:
            enrolment_log.removeHandler(failures)
            source.dispose()
        season = make_engine(f"sqlite:///{root / 'var' / 'sim' / 'simulation.db'}")
        with season.connect() as conn:
            broken = conn.execute(
                select(DELIVERY.c.template, DELIVERY.c.last_error).where(DELIVERY.c.reason == "render_error")
            ).all()
            exits = conn.execute(
                select(ENROLMENT.c.end_reason).where(ENROLMENT.c.end_reason.like("expression_error%"))
            ).all()
        season.dispose()
        assert not broken, f"{mutation}: validate passed, the season failed to render {broken[:3]}"
        assert not exits, f"{mutation}: validate passed, flows exited on {exits[:3]}"
        wheres = [line for line in failures.lines if "trigger where" in line]
        assert not wheres, f"{mutation}: validate passed, event filters failed: {wheres[:3]}"
