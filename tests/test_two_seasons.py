"""A campaign id is reusable next season, and re-running a season adds nothing.

The shipped campaigns run the whole 2026 season on a demo shop (``simulate`` keeping its store);
then the workspace's dates move a year on (same campaign ids) and the same customers order again in
November 2027: the 2027 season reaches them again, because per-contact keys name their season
(``shipping_cutoff-7d@2027-12-24``). Simulating either season a second time on the kept store sends
nothing: what was sent counts as sent.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Integer, cast, insert, select
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.demo.load import generate_demo_shop
from engine.settings import Settings
from engine.simulation import SimulationOptions, simulate
from engine.simulation.report import SeasonReport
from engine.store import make_engine, upgrade
from engine.store.models import Delivery, ShopOrder
from engine.workspace.loader import load_workspace

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
DELIVERY = Delivery.__table__  # type: ignore[attr-defined]
ORDER = ShopOrder.__table__  # type: ignore[attr-defined]


def _shipped(root: Path) -> Path:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, root / part)
    (root / "var").mkdir()
    return root


def _next_year(root: Path) -> None:
    """Every date in the campaigns and schedules one year later (2027 before 2026, so none moves twice)."""
    for folder in ("campaigns", "schedules"):
        for path in (root / folder).glob("*.yaml"):
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace("2027-", "2028-").replace("2026-", "2027-"), encoding="utf-8")


def _order_again(engine: Engine) -> int:
    """Every customer who ordered in the 2026 season orders the same again a year later."""
    year = timedelta(days=365)
    with engine.begin() as conn:
        orders = conn.execute(
            select(ORDER).where(ORDER.c.placed_at >= datetime(2026, 11, 1, tzinfo=UTC))
        ).mappings()
        again = [
            {
                **{k: v for k, v in row.items() if k != "id"},
                "external_id": f"{row['external_id']}-2027",
                "placed_at": row["placed_at"] + year,
            }
            for row in orders
        ]
        conn.execute(insert(ORDER), again)
    return len(again)


def _season(root: Path, database: Path, keep: Path, start: date, end: date) -> SeasonReport:
    settings = Settings(workspace=root, database_url=f"sqlite:///{database}", secret_key="k" * 40)
    workspace = load_workspace(root, default_timezone=settings.timezone)
    assert workspace.ok, workspace.errors
    source = make_engine(f"sqlite:///{database}")
    options = SimulationOptions(
        start, end, root / "var" / "simulation", root / "var" / "outbox", database_file=keep
    )
    try:
        return simulate(settings, source, workspace.workspace, options)
    finally:
        source.dispose()


def _reminded(database: Path, season: str) -> set[int]:
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        found = conn.execute(
            select(cast(DELIVERY.c.contact_id, Integer)).where(
                DELIVERY.c.campaign_id == "shipping-deadlines",
                DELIVERY.c.state == "sent",
                DELIVERY.c.occurrence.like(f"%@{season}"),
            )
        ).scalars()
        reminded = set(found)
    engine.dispose()
    return reminded


def test_the_same_campaigns_send_again_next_season_and_never_twice_in_one(tmp_path: Path) -> None:
    root = _shipped(tmp_path / "shop")
    live = root / "var" / "tidings.db"
    engine = make_engine(f"sqlite:///{live}")
    upgrade(engine)
    generate_demo_shop(engine, contacts=80, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC)))
    engine.dispose()

    first = _season(root, live, tmp_path / "2026.db", date(2026, 12, 1), date(2027, 1, 31))
    again = _season(
        root, tmp_path / "2026.db", tmp_path / "2026-again.db", date(2026, 12, 1), date(2027, 1, 31)
    )
    assert first.totals["sent"] > 0
    assert again.totals["sent"] == 0 and again.totals["skipped"] == 0

    _next_year(root)
    kept = make_engine(f"sqlite:///{tmp_path / '2026.db'}")
    assert _order_again(kept) > 0
    kept.dispose()
    second = _season(root, tmp_path / "2026.db", tmp_path / "2027.db", date(2027, 12, 1), date(2028, 1, 31))
    second_again = _season(
        root, tmp_path / "2027.db", tmp_path / "2027-again.db", date(2027, 12, 1), date(2028, 1, 31)
    )

    assert second.campaigns["shipping-deadlines"].sent > 0
    assert second.campaigns["holiday-greetings"].sent > 0
    assert second_again.totals["sent"] == 0
    this_year = _reminded(tmp_path / "2027.db", "2026-12-24")
    next_year = _reminded(tmp_path / "2027.db", "2027-12-24")
    assert this_year & next_year, "the same customers are reminded in both seasons"
