"""How long does ``tidings demo-data`` take for a 50,000-contact shop on SQLite?

Generates the shop (seed 2026, season 2026) into a temporary SQLite file with
``generate_demo_shop`` and reports wall time, CPU time of this process and contacts per
second. Target: 50,000 contacts in under 20 s on SQLite. The machine may be shared: CPU
time shows what the work itself costs when wall time is inflated by other processes.

Run: ``.venv/bin/python bench/demo_data.py [--contacts 50000] [--database-url URL]``
(``python -m bench`` runs it with the other benchmarks.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.clock import FakeClock
from engine.demo import generate_demo_shop
from engine.store import make_engine, upgrade

TARGET_SECONDS = 20.0


def run(contacts: int, database_url: str | None = None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as folder:
        url = database_url or f"sqlite:///{Path(folder) / 'demo.db'}"
        engine = make_engine(url)
        upgrade(engine)
        clock = FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
        wall, cpu = time.perf_counter(), time.process_time()
        summary = generate_demo_shop(engine, contacts=contacts, seed=2026, season=2026, clock=clock)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        engine.dispose()
    rows = summary.contacts + summary.orders + summary.gift_cards + summary.events + summary.suppressions
    return {
        "benchmark": "demo_data",
        "database": url.split(":", 1)[0],
        "contacts": summary.contacts,
        "orders": summary.orders,
        "gift_cards": summary.gift_cards,
        "events": summary.events,
        "rows_written_approx": rows,
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "contacts_per_second": round(summary.contacts / wall),
        "target_seconds": TARGET_SECONDS,
        "within_target": wall < TARGET_SECONDS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument(
        "--database-url", default=None, help="an empty, migrated database instead of a temp SQLite file"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = parser.parse_args(argv)
    report = run(args.contacts, args.database_url)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"demo-data: {report['contacts']:,} contacts ({report['orders']:,} orders, "
            f"{report['gift_cards']:,} gift cards, "
            f"{report['events']:,} events) on {report['database']} in {report['wall_seconds']} s wall, "
            f"{report['cpu_seconds']} s CPU — {report['contacts_per_second']:,} contacts/s "
            f"(target < {TARGET_SECONDS:.0f} s: {'met' if report['within_target'] else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
