"""End to end: plan a campaign for N recipients on SQLite and dispatch it to a SendGrid-compatible server.

For each size (default 20,000 and 100,000), a child process builds a fresh SQLite file
(contacts with email consent, bulk Core inserts), fires one occurrence of a one-step
marketing campaign through :func:`engine.runtime.fire.fire` (the planner's ``INSERT …
SELECT``), then drains it with the real :class:`~engine.runtime.dispatcher.Dispatcher`:
claim → policy gate → MJML/Jinja render per recipient → the real ``sendgrid`` client →
batched outcome writes. The child reports plan and dispatch times and its peak RSS, so the
two sizes can be compared for flat memory (the dispatcher holds one batch at a time).

In the same run, the server's own capacity is measured with a plain keep-alive HTTP
client (httpx, a pooled client, as many threads as the dispatcher's concurrency) posting
the bodies our channel builds: end-to-end throughput is read against that ceiling. The
server runs in its own process so that it does not share the dispatcher's GIL; on a
2-core machine the two still share the CPU, which is the honest limit of a loopback run.

Run: ``/work/venv/bin/python bench/end_to_end.py [--sizes 20000 100000] [--concurrency 32]
[--no-validate]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "SG.bench-key"
CHUNK = 5_000
TARGET = 1_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def run_size(size: int, folder: Path, url: str, concurrency: int) -> dict[str, Any]:
    """Child process: build, plan and dispatch ``size`` recipients; report times and peak RSS."""
    from sqlalchemy import func, insert, select

    from engine.clock import SystemClock
    from engine.runtime.dispatcher import dispatcher_for
    from engine.runtime.fire import fire
    from engine.settings import Settings
    from engine.store import make_engine, upgrade
    from engine.store.models import Consent, Contact, Delivery
    from tests.test_dispatch_support import campaign, write_templates

    write_templates(folder)
    database = folder / "bench.db"
    settings = Settings(
        workspace=folder,
        database_url=f"sqlite:///{database}",
        email_channel="sendgrid",
        sendgrid_api_key=API_KEY,
        sendgrid_host=url,
        sendgrid_timeout_seconds=30,
        secret_key="b" * 40,
        concurrency=concurrency,
        batch_size=1_000,
        email_rate_per_second=1_000_000,
    )
    engine = make_engine(settings.database_url_resolved, pool_size=concurrency + 4)
    upgrade(engine)
    clock = SystemClock()
    granted = clock.now() - timedelta(days=30)
    started = time.perf_counter()
    with engine.begin() as conn:
        for first in range(1, size + 1, CHUNK):
            ids = range(first, min(first + CHUNK, size + 1))
            conn.execute(
                insert(Contact.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "id": i,
                        "email": f"shopper{i}@example.com",
                        "first_name": f"Shopper{i}",
                        "timezone": "Europe/Tallinn",
                        "country": "EE",
                        "locale": "en",
                        "tags": [],
                        "attributes": {},
                        "total_spent": Decimal("0"),
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Consent.__table__),  # type: ignore[attr-defined]
                [{"contact_id": i, "channel": "email", "granted_at": granted} for i in ids],
            )
    built = time.perf_counter() - started

    bench = campaign("bench", trigger={"at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")})
    workspace = SimpleNamespace(
        campaigns={"bench": bench}, segments={}, schedules=None, templates_dir=folder / "templates"
    )
    started = time.perf_counter()
    plan = fire(engine, workspace, bench, None, clock=clock, settings=settings, due_now=True)
    planned = time.perf_counter() - started

    started = time.perf_counter()
    with dispatcher_for(engine, settings, clock, workspace) as dispatcher:
        stats = dispatcher.drain()
    dispatched = time.perf_counter() - started
    with engine.connect() as conn:
        sent = conn.execute(
            select(func.count()).where(Delivery.__table__.c.state == "sent")  # type: ignore[attr-defined]
        ).scalar_one()
    engine.dispose()
    return {
        "size": size,
        "build_s": round(built, 2),
        "planned": plan.created,
        "plan_s": round(planned, 2),
        "dispatch_s": round(dispatched, 2),
        "sent": int(sent),
        "failed": stats.failed,
        "retried": stats.retried,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def capacity(url: str, seconds: float, threads: int) -> float:
    """The server's own rate with a keep-alive client posting our channel's bodies."""
    import httpx

    from bench.sendgrid_capacity import run_for, sample
    from engine.channels.sendgrid import mail_body

    bodies = [json.dumps(mail_body(sample(n))).encode() for n in range(256)]
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(base_url=url, headers=headers, limits=limits, timeout=10) as client:

        def keep_alive(n: int) -> None:
            response = client.post("/v3/mail/send", content=bodies[n % len(bodies)])
            if response.status_code != 202:
                raise RuntimeError(response.status_code)

        keep_alive(0)
        ok, _errors, elapsed = run_for(seconds, threads, keep_alive)
    return ok / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of the capacity measurement")
    parser.add_argument("--no-validate", action="store_true", help="skip the server's JSON Schema check")
    args = parser.parse_args(argv)

    from bench.sendgrid_capacity import serve

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    stop = context.Event()
    server = context.Process(target=serve, args=(API_KEY, not args.no_validate, send, stop), daemon=True)
    server.start()
    results: list[dict[str, Any]] = []
    try:
        if not receive.poll(60):
            raise SystemExit("the SendGrid-compatible server did not start")
        url = receive.recv()
        ceiling = capacity(url, args.seconds, args.concurrency)
        for size in args.sizes:
            with tempfile.TemporaryDirectory(prefix="tidings-e2e-") as folder:
                child = subprocess.run(
                    [sys.executable, __file__, "run", str(size), folder, url, str(args.concurrency)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
                return 1
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    finally:
        stop.set()
        server.join(timeout=10)

    validation = "off" if args.no_validate else "on"
    print(
        f"server capacity (httpx keep-alive, {args.concurrency} threads, validation {validation}): "
        f"{ceiling:.0f} msg/s"
    )
    for row in results:
        end_to_end = row["sent"] / (row["plan_s"] + row["dispatch_s"])
        dispatch_rate = row["sent"] / row["dispatch_s"]
        print(
            f"{row['size']:>7} recipients: planned {row['planned']} in {row['plan_s']} s, "
            f"sent {row['sent']} ({row['failed']} failed, {row['retried']} retried) "
            f"in {row['dispatch_s']} s; "
            f"end to end {end_to_end:.0f} msg/s (dispatch {dispatch_rate:.0f} msg/s, "
            f"{dispatch_rate / ceiling:.0%} of the server's capacity); peak RSS {row['peak_rss_mb']} MB"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        print(
            f"peak RSS {small['size']} → {large['size']}: {small['peak_rss_mb']} → {large['peak_rss_mb']} MB "
            f"({large['peak_rss_mb'] - small['peak_rss_mb']:+.1f} MB for "
            f"{large['size'] // small['size']}× the recipients)"
        )
    best = max((r["sent"] / (r["plan_s"] + r["dispatch_s"]) for r in results), default=0.0)
    verdict = "met" if best >= TARGET else "not met"
    print(
        f"target ≥ {TARGET} emails/s end to end: {verdict} "
        f"(best {best:.0f}; the server's own ceiling {ceiling:.0f})"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        size, folder, url, concurrency = int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
        print(json.dumps(run_size(size, folder, url, concurrency)))
    else:
        raise SystemExit(main())
