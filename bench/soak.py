"""Soak: one blast on PostgreSQL through N workers with a shared limit, while workers and the leader die.

What runs, all as real processes on this machine:

* a fresh PostgreSQL database with ``--contacts`` consenting contacts (100,000 by default;
  ``--contacts 1000000`` on demand), migrated to head;
* the SendGrid-compatible test server (``tests/servers``, JSON Schema validation on) under
  uvicorn in ``--server-workers`` processes (:mod:`bench.sendgrid_capacity`), counting what it
  accepts;
* two ``tidings run`` daemons (a leader and a standby) and ``--workers`` ``tidings worker``
  processes (``-c 2``) on one Redis broker, with ``TIDINGS_EMAIL_RATE_PER_SECOND=--rate``
  shared by all of them.

First, the scaling: ``--scaling-rows`` rows sent without a rate limit by one worker, then by two
(messages per second per worker process, and the ratio). Then the soak: a campaign due at the
next minute is fired by the leader and sent at the shared rate; at ``--kills`` random moments
(seeded) a worker or the leader is SIGKILLed and restarted ``--restart-after`` seconds later, as
a supervisor would. At the end it prints:

* **lost** — planned rows never sent (must be 0);
* **duplicates** — messages the provider accepted beyond one per row, against the bound: what
  was in flight in the killed workers (their rows claimed and not yet recorded at the kill);
* **recovery after each kill** — a worker: until none of its claims and batch receipts is left
  (claims run out one lease after its last heartbeat, the sweeper re-publishes its batches);
  the leader: until another daemon holds the lease;
* **the rate** — the most messages sent in any minute, against the limit;
* **peak RSS** per process (``VmHWM``) and **messages/s per worker process**.

Run: ``.venv/bin/python bench/soak.py [--contacts 100000] [--workers 2] [--rate 400] [--kills 5]
[--seed 1] [--scaling-rows 10000] [--redis-url redis://127.0.0.1:6379/14]``; PostgreSQL from
``TIDINGS_TEST_PG_URL`` (default the local trust setup), where it creates and drops a database.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

API_KEY = "SG.soak-key"
SECRET = "soak-" + "s" * 40
CHUNK = 5_000
#: ``tidings worker -c``: batches in progress per worker process.
BATCHES_PER_WORKER = 2
CONCURRENCY = 16

CAMPAIGN = """\
name: {name}
status: active
timezone: UTC
audience:
  where:
    - consent: email
trigger:
  at: {at}
steps:
  - id: main
    send: {{channel: email, template: greeting}}
"""


def tidings_command() -> str:
    from cli_support import TIDINGS

    return TIDINGS


# --- the store ------------------------------------------------------------------------------------


def create_database(admin_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"tidings_soak_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_database(admin_url: str, url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def add_contacts(engine: Any, count: int) -> float:
    from bench.end_to_end import add_shoppers

    started = time.perf_counter()
    add_shoppers(engine, count, granted=datetime.now(UTC) - timedelta(days=30))
    return time.perf_counter() - started


def states(engine: Any, campaign: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from engine.store.models import Delivery

    table = Delivery.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        rows = conn.execute(
            select(table.c.state, func.count()).where(table.c.campaign_id == campaign).group_by(table.c.state)
        ).all()
    return {state: int(n) for state, n in rows}


# --- processes ------------------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set (``VmHWM``), while it lives."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Every process this run started, so that an interrupted run (Ctrl-C, SIGTERM, a failure) leaves none.
STARTED: list[subprocess.Popen[bytes]] = []


@dataclass
class Child:
    """One ``tidings`` process; restarted under the same name after a kill."""

    name: str
    args: list[str]
    env: dict[str, str]
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    lives: int = 0
    peak_mb: float = 0.0

    def start(self) -> None:
        self.lives += 1
        log = (self.folder / f"{self.name}-{self.lives}.log").open("wb")
        self.process = subprocess.Popen(
            [tidings_command(), *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        STARTED.append(self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def sample(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.peak_mb = max(self.peak_mb, peak_rss_mb(self.pid) or 0.0)

    def kill(self) -> None:
        self.sample()
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process is not None else 0
        self.sample()
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=30)

    def output(self) -> str:
        return "".join(
            (self.folder / f"{self.name}-{life}.log").read_text(errors="replace")
            for life in range(1, self.lives + 1)
        )


def base_env(
    workspace: Path, database_url: str, redis_url: str, queue: str, server: str, rate: float
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        {
            "TIDINGS_WORKSPACE": str(workspace),
            "TIDINGS_DATABASE_URL": database_url,
            "TIDINGS_BROKER_URL": redis_url,
            "TIDINGS_BROKER_QUEUE": queue,
            "TIDINGS_EMAIL_CHANNEL": "sendgrid",
            "TIDINGS_SENDGRID_API_KEY": API_KEY,
            "TIDINGS_SENDGRID_HOST": server,
            "TIDINGS_SENDGRID_TIMEOUT_SECONDS": "30",
            "TIDINGS_SECRET_KEY": SECRET,
            "TIDINGS_PUBLIC_URL": "https://shop.example.com",
            "TIDINGS_EMAIL_RATE_PER_SECOND": str(rate),
            "TIDINGS_CONCURRENCY": str(CONCURRENCY),
            "TIDINGS_LOG_LEVEL": "WARNING",
        }
    )
    return env


def wait(predicate: Callable[[], bool], timeout: float, what: str, every: float = 0.5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(every)
    raise SystemExit(f"soak: timed out after {timeout:.0f} s waiting for {what}")


def worker_ready(child: Child) -> bool:
    return "Ready:" in child.output()


# --- scaling: one worker, then two, without a limit ---------------------------------------------


def add_outbox(engine: Any, campaign: str, occurrence: str, count: int) -> None:
    from sqlalchemy import insert

    from engine.store.models import Delivery

    now = datetime.now(UTC) - timedelta(seconds=5)
    with engine.begin() as conn:
        for first in range(1, count + 1, CHUNK):
            conn.execute(
                insert(Delivery.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "idempotency_key": f"{campaign}:main:{cid}:{occurrence}",
                        "campaign_id": campaign,
                        "step_id": "main",
                        "contact_id": cid,
                        "channel": "email",
                        "category": "marketing",
                        "template": "greeting",
                        "occurrence": occurrence,
                        "scheduled_for": now,
                        "created_at": now,
                        "context": {},
                    }
                    for cid in range(first, min(first + CHUNK, count + 1))
                ],
            )


def measure_scaling(engine: Any, env: dict[str, str], folder: Path, rows: int) -> dict[int, dict[str, float]]:
    """Messages per second with 1 and 2 workers and no rate limit (a publisher in this process)."""
    from engine.clock import SystemClock
    from engine.fanout import Publisher
    from engine.settings import Settings

    results: dict[int, dict[str, float]] = {}
    unlimited = {**env, "TIDINGS_EMAIL_RATE_PER_SECOND": "1000000"}
    settings = Settings(
        **{k.removeprefix("TIDINGS_").lower(): v for k, v in unlimited.items() if k.startswith("TIDINGS_")}
    )
    for count in (1, 2):
        occurrence = f"scaling-{count}"
        add_outbox(engine, "scale", occurrence, rows)
        workers = [
            Child(f"scale{count}-worker{i}", ["worker", "-c", str(BATCHES_PER_WORKER)], unlimited, folder)
            for i in range(count)
        ]
        for worker in workers:
            worker.start()
        wait(lambda ws=workers: all(worker_ready(w) for w in ws), 180, "workers ready")
        cpu_before = [cpu_seconds(w.pid) or 0.0 for w in workers]
        publisher = Publisher(settings, engine, SystemClock())
        started = time.monotonic()
        publisher.publish_due()
        seconds = wait(
            lambda occ=occurrence: sent_of(engine, "scale", occ) >= rows, 600, "the scaling run", 0.2
        )
        publisher.close()
        cpu = sum((cpu_seconds(w.pid) or 0.0) - before for w, before in zip(workers, cpu_before, strict=True))
        for worker in workers:
            worker.stop()
        elapsed = time.monotonic() - started
        results[count] = {
            "seconds": round(elapsed, 1),
            "per_second": rows / seconds,
            "per_worker": rows / seconds / count,
            "cpu_us_per_message": cpu / rows * 1e6,
            "peak_rss_mb": max(w.peak_mb for w in workers),
        }
    return results


def sent_of(engine: Any, campaign: str, occurrence: str) -> int:
    from sqlalchemy import func, select

    from engine.store.models import Delivery

    table = Delivery.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    table.c.campaign_id == campaign, table.c.occurrence == occurrence, table.c.state == "sent"
                )
            ).scalar_one()
        )


# --- the soak -------------------------------------------------------------------------------------


@dataclass
class Kill:
    at: float
    victim: str
    pid: int = 0
    in_flight: int = 0
    recovered_after: float | None = None
    detail: str = ""


@dataclass
class Soak:
    engine: Any
    daemons: list[Child]
    workers: list[Child]
    restart_after: float
    kills: list[Kill] = field(default_factory=list)

    def leader(self) -> tuple[Child | None, int]:
        from sqlalchemy import select

        from engine.leadership import LEADER, LEASE

        with self.engine.connect() as conn:
            row = conn.execute(select(LEASE.c.holder, LEASE.c.epoch).where(LEASE.c.name == LEADER)).first()
        if row is None:
            return None, 0
        pid = int(row.holder.split(":")[1])
        for daemon in self.daemons:
            if daemon.process is not None and daemon.pid == pid and daemon.process.poll() is None:
                return daemon, int(row.epoch)
        return None, int(row.epoch)

    def held_by(self, pid: int) -> int:
        """Claims and batch receipts still held by process ``pid`` (a dead worker's, until recovered)."""
        from sqlalchemy import func, select

        from engine.leadership import LEASE
        from engine.store.models import Delivery

        table = Delivery.__table__  # type: ignore[attr-defined]
        pattern = f"%:{pid}:%"
        with self.engine.connect() as conn:
            claims = conn.execute(
                select(func.count()).where(table.c.state == "claimed", table.c.claimed_by.like(pattern))
            ).scalar_one()
            receipts = conn.execute(select(func.count()).where(LEASE.c.holder.like(pattern))).scalar_one()
        return int(claims) + int(receipts)

    def claims_of(self, pid: int) -> int:
        from sqlalchemy import func, select

        from engine.store.models import Delivery

        table = Delivery.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        table.c.state == "claimed", table.c.claimed_by.like(f"%:{pid}:%")
                    )
                ).scalar_one()
            )

    def strike(self, kill: Kill, rng: random.Random) -> Child | None:
        """SIGKILL the victim; returns the process to restart."""
        if kill.victim == "leader":
            child, epoch = self.leader()
            if child is None:
                kill.detail = "no live leader to kill"
                return None
            kill.pid = child.pid
            kill.detail = f"epoch {epoch}"
            child.kill()
            return child
        alive = [w for w in self.workers if w.process is not None and w.process.poll() is None]
        child = rng.choice(alive)
        kill.pid = child.pid
        child.kill()
        kill.in_flight = self.claims_of(kill.pid)  # claimed and not recorded when it died
        return child

    def recovered(self, kill: Kill, epoch_at_kill: int) -> bool:
        if kill.victim == "leader":
            child, epoch = self.leader()
            return child is not None and epoch > epoch_at_kill
        return self.held_by(kill.pid) == 0

    def sample(self) -> None:
        for child in (*self.daemons, *self.workers):
            child.sample()


def sent_per_minute(engine: Any, campaign: str) -> int:
    """The most rows of ``campaign`` sent in any sixty seconds (from ``sent_at``)."""
    from sqlalchemy import select

    from engine.store.models import Delivery

    table = Delivery.__table__  # type: ignore[attr-defined]
    with engine.connect() as conn:
        moments = sorted(
            t.timestamp()
            for t in conn.execute(
                select(table.c.sent_at).where(table.c.campaign_id == campaign, table.c.state == "sent")
            ).scalars()
        )
    best, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= 60:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_soak(args: argparse.Namespace, engine: Any, env: dict[str, str], folder: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    due = (datetime.now(UTC) + timedelta(seconds=40)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    (Path(env["TIDINGS_WORKSPACE"]) / "campaigns" / "blast.yaml").write_text(
        CAMPAIGN.format(name="Soak blast", at=due.strftime("%Y-%m-%dT%H:%M")), encoding="utf-8"
    )
    daemons = []
    for index in range(2):
        port = 18_000 + rng.randrange(10_000)
        daemon_env = {**env, "TIDINGS_PUBLIC_BIND": f"127.0.0.1:{port}"}
        daemons.append(Child(f"daemon{index}", ["run", "--no-watch"], daemon_env, folder))
    workers = [
        Child(f"worker{i}", ["worker", "-c", str(BATCHES_PER_WORKER)], env, folder)
        for i in range(args.workers)
    ]
    soak = Soak(engine, daemons, workers, args.restart_after)
    for child in (*daemons, *workers):
        child.start()
    wait(lambda: all(worker_ready(w) for w in workers), 180, "workers ready")
    wait(lambda: soak.leader()[0] is not None, 180, "a leader")
    print(
        f"soak: blast of {args.contacts:,} due at {due:%H:%M:%S} UTC; "
        f"{args.workers} workers, limit {args.rate:g}/s"
    )
    wait(lambda: datetime.now(UTC) >= due, 180, "the blast's minute", 0.2)
    fired_at = time.monotonic()
    expected = args.contacts / args.rate
    victims = ["leader", "worker"] * ((args.kills + 1) // 2)
    rng.shuffle(victims)
    spacing = args.lease + 10
    moments = sorted(rng.uniform(0.1, 0.8) * expected for _ in range(args.kills))
    for i in range(1, len(moments)):
        moments[i] = max(moments[i], moments[i - 1] + spacing)
    soak.kills = [Kill(at, victim) for at, victim in zip(moments, victims[: args.kills], strict=True)]
    pending = list(soak.kills)
    watching: list[tuple[Kill, float, int]] = []
    restarts: list[tuple[float, Child]] = []
    last_sample = 0.0
    deadline = fired_at + max(600.0, expected * 3 + 300)
    planned = 0
    while time.monotonic() < deadline:
        now = time.monotonic() - fired_at
        if pending and now >= pending[0].at:
            kill = pending.pop(0)
            epoch = soak.leader()[1]
            victim = soak.strike(kill, rng)
            if victim is not None:
                restarts.append((time.monotonic() + args.restart_after, victim))
                watching.append((kill, time.monotonic(), epoch))
                print(
                    f"soak: {now:6.1f} s  SIGKILL {kill.victim} pid {kill.pid} "
                    f"({kill.detail or f'{kill.in_flight} claimed'})"
                )
        for when, child in list(restarts):
            if time.monotonic() >= when:
                child.start()
                restarts.remove((when, child))
        for entry in list(watching):
            kill, started, epoch = entry
            if soak.recovered(kill, epoch):
                kill.recovered_after = time.monotonic() - started
                watching.remove(entry)
                print(
                    f"soak: {now:6.1f} s  recovered from the {kill.victim} kill "
                    f"in {kill.recovered_after:.1f} s"
                )
        if time.monotonic() - last_sample > 2:
            soak.sample()
            last_sample = time.monotonic()
        counts = states(engine, "blast")
        planned = sum(counts.values())
        done = counts.get("sent", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
        if planned == args.contacts and done == planned and not pending and not watching and not restarts:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"soak: did not finish in time: {states(engine, 'blast')}")
    elapsed = time.monotonic() - fired_at
    soak.sample()
    codes = {child.name: child.stop() for child in (*daemons, *workers)}
    counts = states(engine, "blast")
    return {
        "elapsed": elapsed,
        "counts": counts,
        "kills": soak.kills,
        "codes": codes,
        "daemons": daemons,
        "workers": workers,
        "per_minute": sent_per_minute(engine, "blast"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=400.0, help="the shared TIDINGS_EMAIL_RATE_PER_SECOND")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restart-after", type=float, default=2.0)
    parser.add_argument("--scaling-rows", type=int, default=10_000, help="rows per scaling run (0: skip it)")
    parser.add_argument(
        "--server-workers", type=int, default=2, help="uvicorn processes of the SendGrid server"
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/14", help="the broker (a Redis database of its own)"
    )
    args = parser.parse_args(argv)

    from service_checks import PG_ADMIN_URL

    from bench.sendgrid_capacity import server_farm
    from engine.runtime.ratelimit import REDIS_PREFIX, bucket_name
    from engine.settings import Settings
    from engine.store import make_engine, upgrade

    args.lease = Settings(secret_key=SECRET).lease_seconds
    redis_url = args.redis_url
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # clean up below, as after Ctrl-C
    queue = f"soak-{uuid.uuid4().hex[:8]}"
    buckets: list[str] = []
    database_url = create_database(PG_ADMIN_URL)
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        built = add_contacts(engine, max(args.contacts, args.scaling_rows))
        print(f"soak: {max(args.contacts, args.scaling_rows):,} contacts in {built:.1f} s on PostgreSQL")
        with (
            tempfile.TemporaryDirectory(prefix="tidings-soak-") as scratch,
            server_farm(API_KEY, validate=True, workers=args.server_workers, threaded=False) as farm,
        ):
            folder = Path(scratch)
            workspace = folder / "workspace"
            from test_dispatch_support import write_templates

            write_templates(workspace)
            (workspace / "campaigns").mkdir(parents=True)
            (workspace / "campaigns" / "scale.yaml").write_text(
                CAMPAIGN.format(name="Scaling", at="2030-01-01T10:00"), encoding="utf-8"
            )
            env = base_env(workspace, database_url, redis_url, queue, farm.url, args.rate)
            shared = Settings(
                **{k[len("TIDINGS_") :].lower(): v for k, v in env.items() if k.startswith("TIDINGS_")}
            )
            buckets.extend(REDIS_PREFIX + bucket_name(shared, channel) for channel in ("email", "x"))
            scaling = measure_scaling(engine, env, folder, args.scaling_rows) if args.scaling_rows else {}
            result = run_soak(args, engine, env, folder)
            accepted, statuses = farm.stop()
        report(args, scaling, result, accepted, statuses)
        lost = args.contacts - result["counts"].get("sent", 0)
        duplicates = accepted - 2 * args.scaling_rows - result["counts"].get("sent", 0)
        bound = sum(kill.in_flight for kill in result["kills"] if kill.victim == "worker")
        return 0 if lost == 0 and 0 <= duplicates <= bound and set(result["codes"].values()) == {0} else 1
    finally:
        for process in STARTED:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        engine.dispose()
        drop_database(PG_ADMIN_URL, database_url)
        _forget(redis_url, queue, buckets)


def _forget(redis_url: str, queue: str, buckets: list[str]) -> None:
    """Delete what this run left in Redis: its queues' keys and its rate buckets."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for key in [*client.scan_iter(match=f"*{queue}*"), *buckets]:
        client.delete(key)
    client.close()


def report(
    args: argparse.Namespace,
    scaling: dict[int, dict[str, float]],
    result: dict[str, Any],
    accepted: int,
    statuses: Any,
) -> None:
    for count, row in scaling.items():
        print(
            f"scaling: {count} worker(s), no limit: {row['per_second']:.0f} msg/s "
            f"({row['per_worker']:.0f} per worker process, "
            f"{row['cpu_us_per_message']:.0f} µs CPU/msg in workers, "
            f"peak RSS {row['peak_rss_mb']:.0f} MB)"
        )
    if 1 in scaling and 2 in scaling:
        print(f"scaling: 1 → 2 workers: {scaling[2]['per_second'] / scaling[1]['per_second']:.2f}×")
    counts = result["counts"]
    sent = counts.get("sent", 0)
    lost = args.contacts - sent
    duplicates = accepted - 2 * args.scaling_rows - sent
    kills = result["kills"]
    in_flight = [kill.in_flight for kill in kills if kill.victim == "worker"]
    print(
        f"soak: {args.contacts:,} planned, {sent:,} sent in {result['elapsed']:.0f} s "
        f"({sent / result['elapsed']:.0f} msg/s, "
        f"{sent / result['elapsed'] / args.workers:.0f} per worker process); "
        f"states {counts}"
    )
    print(
        f"soak: lost {lost}; duplicates {duplicates} (at most what the killed workers had in flight: "
        f"{' + '.join(map(str, in_flight)) or '0'} = {sum(in_flight)})"
    )
    print(
        f"soak: most sent in any minute {result['per_minute']:,} (limit {args.rate:g}/s: "
        f"{args.rate * 60 + args.rate:,.0f} with the one-second burst)"
    )
    for kill in kills:
        recovered = f"{kill.recovered_after:.1f} s" if kill.recovered_after is not None else "—"
        extra = f", {kill.in_flight} rows claimed" if kill.victim == "worker" else f", {kill.detail}"
        print(
            f"soak: kill at {kill.at:5.1f} s: {kill.victim} pid {kill.pid}{extra}; recovered in {recovered}"
        )
    for child in (*result["daemons"], *result["workers"]):
        print(f"soak: peak RSS {child.name}: {child.peak_mb:.0f} MB over {child.lives} life/lives")
    print(f"soak: exit codes {result['codes']}; server replies {dict(statuses)}")


if __name__ == "__main__":
    raise SystemExit(main())
