"""Is the ``sendgrid`` library (urllib, no keep-alive) the throughput limit of the SendGrid channel?

Starts the SendGrid-compatible test server on 127.0.0.1 and, in the same run, measures:

1. the server's capacity with a plain keep-alive HTTP client (httpx, N threads, one
   pooled ``httpx.Client``) posting the very body our channel builds, and
2. the throughput of :class:`engine.channels.sendgrid.SendGridChannel` with 16 threads
   (the dispatcher's default concurrency), through the real library,

each for a few seconds, and prints both in messages/s and their ratio. A ratio well
below 1 means the client side (a new TCP connection per message, urllib's overhead)
limits us before the server does. Loopback only; the real API adds a TLS handshake per
connection, which widens the gap. The server runs in its own process, so that client
and server do not share one GIL.

Measured (2 shared cores under load, 3 s each): with the server's schema validation,
keep-alive 326 msg/s vs channel 302 msg/s (0.93); ``--no-validate`` 509 vs 533 (1.05).
The urllib client is not the throughput limit on loopback.

Run: ``/work/venv/bin/python bench/sendgrid_capacity.py [--seconds 3] [--threads 16]``
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.channels.sendgrid import SendGridChannel, mail_body  # noqa: E402
from engine.message import EmailMessage  # noqa: E402
from tests.servers.sendgrid_server import SendGridServer  # noqa: E402

API_KEY = "SG.bench-key"


def sample(n: int) -> EmailMessage:
    return EmailMessage(
        to_email=f"customer{n}@example.com",
        to_name="Customer",
        subject="Order by December 19 for delivery before Christmas",
        html="<html><body>" + "<p>Holiday offers and shipping deadlines.</p>" * 60 + "</body></html>",
        text="Holiday offers and shipping deadlines.\n" * 60,
        from_email="hello@shop.example.com",
        from_name="Nordlys & Brad",
        headers={
            "X-Tidings-Campaign": "shipping-deadlines",
            "X-Tidings-Delivery": str(n),
            "List-Unsubscribe": "<https://shop.example.com/u/token>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


def run_for(seconds: float, threads: int, work: Callable[[int], None]) -> tuple[int, int, float]:
    """Call ``work(n)`` from ``threads`` threads until ``seconds`` pass; (successes, errors, elapsed)."""
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))
    lock = threading.Lock()
    done = [0, 0]

    def loop() -> None:
        ok = failed = 0
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter)
            try:
                work(n)
                ok += 1
            except Exception:  # noqa: BLE001 - counted, the figure says how many
                failed += 1
        with lock:
            done[0] += ok
            done[1] += failed

    started = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return done[0], done[1], time.perf_counter() - started


def serve(api_key: str, validate: bool, port_out: Connection, stop: Event) -> None:
    """Child process: run the compatible server until told to stop."""
    with SendGridServer(api_key=api_key, validate=validate) as server:
        port_out.send(server.url)
        stop.wait(600)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--threads", type=int, default=16, help="threads for both clients")
    parser.add_argument(
        "--no-validate",
        action="store_true",
        help="skip the server's JSON Schema check (~ms per request) to expose the transport's own limit",
    )
    args = parser.parse_args(argv)

    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    stop = context.Event()
    child = context.Process(target=serve, args=(API_KEY, not args.no_validate, send, stop), daemon=True)
    child.start()
    try:
        if not receive.poll(30):
            raise SystemExit("the SendGrid-compatible server did not start")
        url = receive.recv()
        bodies = [json.dumps(mail_body(sample(n))).encode() for n in range(256)]
        headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=args.threads, max_keepalive_connections=args.threads)
        with httpx.Client(base_url=url, headers=headers, limits=limits, timeout=10) as client:

            def keep_alive(n: int) -> None:
                response = client.post("/v3/mail/send", content=bodies[n % len(bodies)])
                if response.status_code != 202:
                    raise RuntimeError(response.status_code)

            keep_alive(0)  # warm up: open a connection
            ok_raw, err_raw, secs_raw = run_for(args.seconds, args.threads, keep_alive)

        channel = SendGridChannel(API_KEY, host=url, timeout=10)
        messages = [sample(n) for n in range(256)]

        def through_channel(n: int) -> None:
            channel.send(messages[n % len(messages)])

        ok_ch, err_ch, secs_ch = run_for(args.seconds, args.threads, through_channel)
        channel.close()
    finally:
        stop.set()
        child.join(timeout=10)

    raw_rate = ok_raw / secs_raw
    channel_rate = ok_ch / secs_ch
    threads = args.threads
    print(f"server capacity, httpx keep-alive, {threads} threads: {raw_rate:8.0f} msg/s  ({err_raw} errors)")
    print(
        f"SendGridChannel (sendgrid/urllib), {threads} threads: {channel_rate:8.0f} msg/s  ({err_ch} errors)"
    )
    print(f"channel / capacity: {channel_rate / raw_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
