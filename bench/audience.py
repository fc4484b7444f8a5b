"""Does planning an audience stay fast, and its memory flat, from 100,000 to 1,000,000 contacts?

For each size, a child process builds a temporary SQLite file (contacts in five time zones,
consent for ~85 %, a few suppressions, orders for a third, all with bulk Core inserts), and
another child process plans one occurrence of a ``local_time`` campaign with the real planner
(``INSERT … SELECT`` into ``delivery``, one statement per distinct send instant) and then
re-plans it (the idempotent no-op). Each child reports its wall time and peak RSS
(``resource.getrusage``), so building the data never counts against the planner's memory.

Flat memory means the planner never pulls the audience into Python: the 1M peak RSS should be
within a few MB of the 100k one, while the time grows roughly linearly.

Run: ``.venv/bin/python bench/audience.py [--sizes 100000 1000000]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

CHUNK = 50_000
ZONES = ["Europe/Tallinn", "Europe/Bucharest", "America/New_York", "Europe/London", None]
COUNTRIES = ["EE", "RO", "US", "GB", "EE"]
LOCALES = ["et", "ro", "en", "en", None]
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def build(size: int, database: Path) -> dict[str, Any]:
    """Fill a fresh SQLite file with ``size`` contacts and their consent, suppressions and orders."""
    from sqlalchemy import insert

    from engine.store import make_engine, upgrade
    from engine.store.models import Consent, Contact, ShopOrder, Suppression

    started = time.perf_counter()
    engine = make_engine(f"sqlite:///{database}")
    upgrade(engine)
    granted = NOW - timedelta(days=200)
    contact_table = Contact.__table__  # type: ignore[attr-defined]
    consent_table = Consent.__table__  # type: ignore[attr-defined]
    order_table = ShopOrder.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for first in range(1, size + 1, CHUNK):
            ids = range(first, min(first + CHUNK, size + 1))
            conn.execute(
                insert(contact_table),
                [
                    {
                        "id": i,
                        "email": f"shopper{i}@example.com",
                        "timezone": ZONES[i % 5],
                        "country": COUNTRIES[i % 5],
                        "locale": LOCALES[i % 5],
                        "tags": ["vip"] if i % 10 == 0 else [],
                        "attributes": {"points": i % 500},
                        "orders_count": i % 3,
                        "total_spent": Decimal(i % 400),
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(consent_table),
                [{"contact_id": i, "channel": "email", "granted_at": granted} for i in ids if i % 7 != 0],
            )
            conn.execute(
                insert(order_table),
                [
                    {
                        "external_id": f"o{i}",
                        "contact_id": i,
                        "placed_at": NOW - timedelta(days=i % 60),
                        "shipping_method": "express" if i % 2 else "standard",
                        "total": Decimal("30.00"),
                        "items": [],
                    }
                    for i in ids
                    if i % 3 == 0
                ],
            )
        conn.execute(
            insert(Suppression.__table__),  # type: ignore[attr-defined]
            [
                {
                    "email": f"shopper{i}@example.com",
                    "channel": "email",
                    "reason": "unsubscribe",
                    "created_at": granted,
                }
                for i in range(11, size + 1, 101)
            ],
        )
    engine.dispose()
    return {"seconds": round(time.perf_counter() - started, 2), "peak_rss_mb": round(_peak_rss_mb(), 1)}


def plan(database: Path) -> dict[str, Any]:
    """Plan (then re-plan) one occurrence of a local-time campaign over the whole file."""
    from engine.clock import FakeClock
    from engine.runtime.occurrences import current_occurrence
    from engine.runtime.planner import plan_occurrence
    from engine.settings import Settings
    from engine.store import make_engine
    from engine.workspace.loader import Workspace
    from engine.workspace.models import Campaign
    from engine.workspace.schedules import Schedules

    campaign = Campaign.model_validate(
        {
            "id": "holiday-offers",
            "name": "Holiday offers",
            "status": "active",
            "timezone": "Europe/Bucharest",
            "audience": {
                "where": [
                    {"consent": "email"},
                    {"any": [{"order": {"placed_within": "90d"}}, {"attributes.points": {"gte": 100}}]},
                ]
            },
            "trigger": {"at": {"time": "2026-12-14T10:00", "local_time": True}},
            "steps": [
                {
                    "id": "offer",
                    "send": {
                        "variants": [
                            {"template": "offer-a", "weight": 50},
                            {"template": "offer-b", "weight": 50},
                        ]
                    },
                }
            ],
        }
    )

    workspace = Workspace(root=database.parent, campaigns={"holiday-offers": campaign})
    engine = make_engine(f"sqlite:///{database}")
    settings = Settings(workspace=database.parent, timezone="UTC")
    clock = FakeClock(NOW)
    occurrence = current_occurrence(campaign, NOW, Schedules(), default_zone=settings.zone)
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    stats = plan_occurrence(engine, workspace, campaign, occurrence, clock=clock, settings=settings)
    planned = time.perf_counter() - started
    started = time.perf_counter()
    again = plan_occurrence(engine, workspace, campaign, occurrence, clock=clock, settings=settings)
    replanned = time.perf_counter() - started
    engine.dispose()
    return {
        "created": stats.created,
        "recreated": again.created,
        "plan_seconds": round(planned, 2),
        "replan_seconds": round(replanned, 2),
        "rss_before_plan_mb": round(rss_before, 1),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _child(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench child {args[0]} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as folder:
        for size in args.sizes:
            database = Path(folder) / f"audience-{size}.db"
            built = _child("build", str(size), str(database))
            planned = _child("plan", str(database))
            rows.append((size, built, planned))
            print(
                f"{size:>9,} contacts: built in {built['seconds']:.1f} s; "
                f"planned {planned['created']:,} deliveries "
                f"in {planned['plan_seconds']:.2f} s (re-plan {planned['replan_seconds']:.2f} s, "
                f"{planned['recreated']} new); planner process peak RSS {planned['peak_rss_mb']:.0f} MB "
                f"({planned['rss_before_plan_mb']:.0f} MB before planning)",
                flush=True,
            )
    if len(rows) >= 2:
        (small, _, first), (large, _, last) = rows[0], rows[-1]
        growth = last["peak_rss_mb"] - first["peak_rss_mb"]
        ratio = last["plan_seconds"] / max(first["plan_seconds"], 1e-9)
        print(
            f"{large // small}× the contacts: {ratio:.1f}× the planning time, "
            f"{growth:+.1f} MB peak RSS ({'flat' if growth < 32 else 'NOT flat'})"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "build":
        print(json.dumps(build(int(sys.argv[2]), Path(sys.argv[3]))))
    elif len(sys.argv) > 1 and sys.argv[1] == "plan":
        print(json.dumps(plan(Path(sys.argv[2]))))
    else:
        main()
