"""How fast can we send to a SendGrid-compatible server, and what does each client cost?

Starts the SendGrid-compatible test server (``tests/servers/sendgrid_server.py``, the one the
tests use: auth, JSON Schema validation, limits) in processes of its own, and measures for a
few seconds each, with the same number of threads:

1. ``keep-alive``: the server's capacity with a plain keep-alive client (one stdlib
   ``http.client`` connection per thread) posting the very body our channel builds;
2. ``channel``: :class:`engine.channels.sendgrid.SendGridChannel`, as the dispatcher uses it;
3. ``library``: the ``sendgrid`` library's ``SendGridAPIClient.send`` (urllib, a new opener
   and a new connection per request), which the channel used before.

For each: messages per second and the client's CPU per message (its whole process, all
threads; ``time.process_time``), which is what bounds the dispatcher: its threads share one
GIL. Every run ends by checking that the server accepted exactly what the clients counted.

The server: by default uvicorn (uvloop, httptools) serving the same request handling
(``tests/servers/asgi.py``) in ``--workers`` processes that share one port (``SO_REUSEPORT``);
``--threaded`` runs the stdlib threaded server the tests use instead, in one process.
Validation is on unless ``--no-validate``; it is compiled (``fastjsonschema``, ~40 µs per
body), with ``jsonschema`` reporting the errors of refused bodies.

Measured (2 shared cores, load 2–6 from other work, 16 threads, 3 s each, validation on,
two uvicorn workers): keep-alive 1,990–2,630 msg/s at ~200 µs of client CPU per message;
the channel 1,670–2,020 msg/s at 285–315 µs; the ``sendgrid`` library 485 msg/s at 1,233 µs
(cProfile: ~60 % of it in ``urllib.request.build_opener``, the TCP connect ~4 %). Server CPU
per request: ~280 µs with validation, ~200 µs without. The stdlib threaded server with the
compiled validation reached 2,080 msg/s keep-alive; with ``jsonschema`` alone and a new
connection per request (the library) it had been the ceiling at 286–501 msg/s.

Run: ``.venv/bin/python bench/sendgrid_capacity.py [--seconds 3] [--threads 16]
[--workers 2] [--threaded] [--no-validate] [--skip-library]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from engine.channels.sendgrid import SendGridChannel, mail_body  # noqa: E402
from engine.message import EmailMessage  # noqa: E402

API_KEY = "SG.bench-key"
MAIL_SEND = "/v3/mail/send"


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


@dataclass(frozen=True)
class Rate:
    """One measurement: successes, errors, wall seconds and the client process's CPU seconds."""

    ok: int
    errors: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def cpu_us_per_message(self) -> float:
        return self.cpu_seconds / self.ok * 1e6 if self.ok else float("nan")


def run_for(seconds: float, threads: int, work: Callable[[int], None]) -> Rate:
    """Call ``work(n)`` from ``threads`` threads until ``seconds`` pass."""
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

    cpu = time.process_time()
    started = time.perf_counter()
    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return Rate(done[0], done[1], time.perf_counter() - started, time.process_time() - cpu)


# --- the server, in processes of its own --------------------------------------------------------


def _serve_asgi(
    api_key: str, validate: bool, port: int, ready: Connection, report: Connection, stop: Event
) -> None:
    """Child process: one uvicorn worker on the shared port; reports its counts once stopped."""
    from servers.asgi import bind_reusable, serve
    from servers.sendgrid_server import SendGridServer

    service = SendGridServer(api_key=api_key, validate=validate, recording=False)
    sock = bind_reusable(port)
    ready.send(port)
    started = time.process_time()
    serve(service, sock, until=stop.wait)
    report.send((service.accepted_count, dict(service.statuses), time.process_time() - started))


def _serve_threaded(
    api_key: str, validate: bool, port: int, ready: Connection, report: Connection, stop: Event
) -> None:
    """Child process: the stdlib threaded server the tests use (``port`` is ignored: it picks one)."""
    from servers.sendgrid_server import SendGridServer

    with SendGridServer(api_key=api_key, validate=validate, recording=False) as server:
        ready.send(server.port)
        started = time.process_time()
        stop.wait()
        report.send((server.accepted_count, dict(server.statuses), time.process_time() - started))


@dataclass
class ServerFarm:
    """The server processes and how to reach them; :meth:`stop` returns what they accepted.

    :attr:`cpu_seconds` is the servers' CPU time, all processes, known once stopped."""

    url: str
    processes: list[BaseProcess]
    reports: list[Connection]
    stopping: Event
    description: str
    cpu_seconds: float = 0.0

    def stop(self) -> tuple[int, Counter[int]]:
        accepted, statuses = 0, Counter[int]()
        self.stopping.set()
        for process, report in zip(self.processes, self.reports, strict=True):
            if report.poll(30):
                count, seen, cpu = report.recv()
                accepted += count
                statuses.update(seen)
                self.cpu_seconds += cpu
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
        return accepted, statuses


@contextmanager
def server_farm(api_key: str, *, validate: bool, workers: int, threaded: bool) -> Iterator[ServerFarm]:
    """Start the compatible server: ``workers`` uvicorn processes on one port, or the threaded one."""
    from servers.asgi import bind_reusable

    context = multiprocessing.get_context("spawn")
    port = 0
    holder = None
    if not threaded:
        holder = bind_reusable(0)  # reserves the port for the workers; it never accepts
        port = holder.getsockname()[1]
        holder.close()
        holder = None
    processes: list[BaseProcess] = []
    reports: list[Connection] = []
    stopping = context.Event()
    target = _serve_threaded if threaded else _serve_asgi
    for _ in range(1 if threaded else workers):
        ready_in, ready_out = context.Pipe(duplex=False)
        report_in, report_out = context.Pipe(duplex=False)
        process = context.Process(
            target=target, args=(api_key, validate, port, ready_out, report_out, stopping)
        )
        process.start()
        if not ready_in.poll(60):
            raise SystemExit("the SendGrid-compatible server did not start")
        port = ready_in.recv()
        processes.append(process)
        reports.append(report_in)
    time.sleep(0.3)  # uvicorn starts accepting a moment after the socket is handed to it
    what = "stdlib threaded, 1 process" if threaded else f"uvicorn+uvloop+httptools, {workers} process(es)"
    farm = ServerFarm(f"http://127.0.0.1:{port}", processes, reports, stopping, what)
    try:
        yield farm
    finally:
        if not stopping.is_set():
            farm.stop()


# --- clients ------------------------------------------------------------------------------------


def bodies(count: int = 256) -> list[bytes]:
    return [json.dumps(mail_body(sample(n))).encode() for n in range(count)]


def keep_alive_capacity(url: str, seconds: float, threads: int, api_key: str = API_KEY) -> Rate:
    """The server's rate with a plain keep-alive client: one ``http.client`` connection per thread."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    payloads = bodies()
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    local = threading.local()

    def post(n: int) -> None:
        connection = getattr(local, "connection", None)
        if connection is None:
            connection = local.connection = http.client.HTTPConnection(host, parts.port, timeout=10)
        try:
            connection.request("POST", MAIL_SEND, body=payloads[n % len(payloads)], headers=headers)
            response = connection.getresponse()
            response.read()
        except Exception:
            connection.close()
            local.connection = None
            raise
        if response.status != 202:
            raise RuntimeError(response.status)

    post(0)
    return run_for(seconds, threads, post)


def channel_rate(url: str, seconds: float, threads: int) -> Rate:
    channel = SendGridChannel(API_KEY, host=url, timeout=10)
    messages = [sample(n) for n in range(256)]

    def send(n: int) -> None:
        channel.send(messages[n % len(messages)])

    try:
        return run_for(seconds, threads, send)
    finally:
        channel.close()


def library_rate(url: str, seconds: float, threads: int) -> Rate:
    """``SendGridAPIClient.send`` as the channel called it before: one client per thread (they are not
    thread-safe), our ``mail_body`` as the request."""
    from sendgrid import SendGridAPIClient

    local = threading.local()
    messages = [sample(n) for n in range(256)]

    def send(n: int) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = SendGridAPIClient(api_key=API_KEY, host=url)
            client.client.timeout = 10
        client.send(mail_body(messages[n % len(messages)]))

    return run_for(seconds, threads, send)


def describe(name: str, rate: Rate, threads: int) -> str:
    return (
        f"{name:<34} {threads:>3} threads: {rate.per_second:7.0f} msg/s, "
        f"client CPU {rate.cpu_us_per_message:6.0f} µs/msg ({rate.errors} errors)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    parser.add_argument("--threads", type=int, default=16, help="threads for every client")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn server processes")
    parser.add_argument("--threaded", action="store_true", help="the stdlib threaded server instead")
    parser.add_argument("--no-validate", action="store_true", help="skip the server's JSON Schema check")
    parser.add_argument("--skip-library", action="store_true", help="do not measure SendGridAPIClient")
    args = parser.parse_args(argv)

    with server_farm(
        API_KEY, validate=not args.no_validate, workers=args.workers, threaded=args.threaded
    ) as farm:
        raw = keep_alive_capacity(farm.url, args.seconds, args.threads)
        channel = channel_rate(farm.url, args.seconds, args.threads)
        library = None if args.skip_library else library_rate(farm.url, args.seconds, args.threads)
        accepted, statuses = farm.stop()

    validation = "off" if args.no_validate else "on"
    print(f"server: {farm.description}, validation {validation}")
    print(describe("keep-alive http.client (capacity)", raw, args.threads))
    print(describe("SendGridChannel (kept-alive)", channel, args.threads))
    if library is not None:
        print(describe("sendgrid library (urllib)", library, args.threads))
    print(f"channel / capacity: {channel.per_second / raw.per_second:.2f}")
    counted = raw.ok + channel.ok + (library.ok if library else 0) + 1  # + the warm-up request
    print(f"server accepted {accepted} (client counted {counted}); replies by status {dict(statuses)}")
    print(f"server CPU: {farm.cpu_seconds / max(1, sum(statuses.values())) * 1e6:.0f} µs per request")
    return 0 if accepted == counted else 1


if __name__ == "__main__":
    raise SystemExit(main())
