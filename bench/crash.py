"""Crash figures: 5 SIGKILLs during a 10,000-message send with 20 % of requests refused (429/5xx).

Run: ``.venv/bin/python -m bench crash`` or ``.venv/bin/python bench/crash.py [--rows 10000]
[--kills 5] [--concurrency 16] [--database-url postgresql://…]``. Prints, per kill, the messages the
killed process had sent without recording them (what the duplicate bound is about: at most the
concurrency), then lost (must be 0) and duplicates for the whole run. The harness is
``tests/crash_harness.py``, the same one ``tests/test_crash.py`` runs at CI size.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a scratch folder")
    args = parser.parse_args(argv)

    from crash_harness import run_crash_scenario, seed_outbox

    from engine.store import make_engine, upgrade

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        url = args.database_url or f"sqlite:///{folder / 'crash.db'}"
        engine = make_engine(url)
        upgrade(engine)
        seed_outbox(engine, args.rows)
        engine.dispose()
        report = run_crash_scenario(
            folder, url, rows=args.rows, kills=args.kills, concurrency=args.concurrency, timeout=1800
        )
    print(json.dumps(report.as_dict()))
    bound_held = all(exposed <= args.concurrency for exposed in report.exposed_per_kill)
    print(
        f"{args.rows:,} messages, {args.kills} kills: lost {report.lost}, duplicates {report.duplicates}, "
        f"exposed per kill {report.exposed_per_kill} (bound {args.concurrency}: "
        f"{'held' if bound_held else 'BROKEN'}) in {report.seconds:.0f} s"
    )
    return 0 if report.lost == 0 and bound_held else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
