"""How long does ``tidings validate`` take on the shipped workspace with the 5,000-contact demo store?

Builds a temporary workspace (a copy of the shipped campaigns/, templates/, schedules/), loads the
demo shop (``generate_demo_shop``, season 2026) into its ``var/tidings.db`` — the default database,
so ``validate`` rehearses every campaign with real contacts — and runs ``tidings validate`` as a
user does, in a fresh process each time (imports included). Prints the wall and CPU time of each
run and the best, against the target.

Target: under 10 s on a 2-core machine. Measured (2026-12, the machine shared with other work):
5.6–5.8 s wall and CPU (3 runs, load ~2), of which ~1.2 s imports, ~3 s compiling the 57 email files
(MRML and one Jinja compilation each: the HTML and text parts alone are compiled only when a
render needs them), ~0.9 s the rehearsal's 137 contact messages (the planner's per-contact
SELECTs), the rest MJML rules, samples and language checks. Before the lazy compilation and the
shared syntax checks it was 8.7–10 s.

Run: ``.venv/bin/python bench/validate.py [--contacts 5000] [--runs 3] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.clock import FakeClock  # noqa: E402
from engine.demo.load import generate_demo_shop  # noqa: E402
from engine.store import make_engine, upgrade  # noqa: E402

TARGET_SECONDS = 10.0


def _tidings() -> str:
    beside = Path(sys.executable).parent / "tidings"
    return str(beside) if beside.is_file() else (shutil.which("tidings") or "tidings")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])

    with tempfile.TemporaryDirectory(prefix="tidings-bench-validate-") as tmp:
        root = Path(tmp)
        for part in ("campaigns", "templates", "schedules"):
            shutil.copytree(ROOT / part, root / part)
        engine = make_engine(f"sqlite:///{root / 'var' / 'tidings.db'}")
        upgrade(engine)
        generate_demo_shop(
            engine, contacts=args.contacts, season=2026, clock=FakeClock(datetime(2026, 11, 1, tzinfo=UTC))
        )
        engine.dispose()
        environment = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        runs: list[dict[str, float]] = []
        summary = ""
        for _ in range(args.runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            done = subprocess.run(
                [_tidings(), "--workspace", str(root), "validate"],
                capture_output=True,
                text=True,
                env=environment,
                cwd=root,
                check=False,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                return 1
            summary = done.stdout.strip()
            runs.append({"wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2)})

    best = min(run["wall_seconds"] for run in runs)
    figures = {
        "contacts": args.contacts,
        "runs": runs,
        "best_wall_seconds": best,
        "target_seconds": TARGET_SECONDS,
        "summary": summary,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            print(f"{key:>18}: {value}")
        verdict = "meets" if best < TARGET_SECONDS else "MISSES"
        print(f"{'':>18}  {verdict} the {TARGET_SECONDS:.0f} s target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
