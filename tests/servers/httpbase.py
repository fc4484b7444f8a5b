"""A real HTTP/1.1 server on 127.0.0.1 in a background thread, with scripted faults.

The provider-compatible servers (SendGrid, X) build on it: each request is answered by
the next scripted :class:`Fault` if one is queued, else by a random fault drawn with the
configured probability, else by the server's own handler. Faults and recordings are
guarded by a lock, because the channels are exercised from many threads at once.

HTTP/1.1 with keep-alive, so a keep-alive client can measure the server's capacity
(``bench/sendgrid_capacity.py``) without paying a TCP handshake per request.

The threaded stdlib server here is what the tests start in-process. The same behaviour
(:meth:`FakeHttpService.reply_to`: faults, the handler, recordings) can be served by
``tests/servers/asgi.py`` under uvicorn instead, which the benchmarks run in processes of
their own: the stdlib server parses headers with ``email.parser`` and spends a thread per
connection, which made it the ceiling of an end-to-end run.
"""

from __future__ import annotations

import json
import random
import sys
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


@dataclass(frozen=True)
class Reply:
    """What the server answers: status, JSON (or no) body, headers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def data(self) -> bytes:
        """The body as sent on the wire: JSON, or nothing."""
        return b"" if self.body is None else json.dumps(self.body).encode("utf-8")


@dataclass(frozen=True)
class Fault:
    """An injected answer. ``delay`` seconds pass before answering (a slow server, for client timeouts);
    with ``reply`` None the request is then handled normally."""

    reply: Reply | None = None
    delay: float = 0.0


class FaultPlan:
    """A queue of scripted faults, then a probability of a random one (seeded, so runs repeat)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._probability = 0.0
        self._choices: list[Fault] = []
        self._random = random.Random(0)

    def script(self, *faults: Fault) -> None:
        with self._lock:
            self._queue.extend(faults)

    def randomly(self, probability: float, *faults: Fault, seed: int = 0) -> None:
        with self._lock:
            self._probability = probability
            self._choices = list(faults)
            self._random = random.Random(seed)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._probability = 0.0
            self._choices = []

    def next(self) -> Fault | None:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._choices and self._random.random() < self._probability:
                return self._random.choice(self._choices)
        return None


@dataclass(frozen=True)
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: tests read the recordings instead."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(self.command, self.path, dict(self.headers.items()), body)
        owner = self.server.owner
        fault = owner.faults.next()
        if fault is not None and fault.delay and owner.stopping.wait(fault.delay):
            return
        self._send(owner.reply_to(request, fault))

    def _send(self, reply: Reply) -> None:
        data = reply.data()
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, owner: FakeHttpService) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a killed worker, a timeout) is expected here: no
        traceback for it; anything else is still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeHttpService:
    """Base of the compatible servers: start/stop, URL, faults, thread-safe recordings.

    Subclasses implement :meth:`handle`. Use as a context manager::

        with SendGridServer(api_key="SG.test") as server:
            ... server.url ...
    """

    def __init__(self, *, recording: bool = True) -> None:
        """``recording=False`` keeps only :attr:`statuses`, not every request (a long benchmark)."""
        self.faults = FaultPlan()
        self.stopping = threading.Event()
        self.recording = recording
        self._lock = threading.Lock()
        self._requests: list[tuple[Request, Reply]] = []
        self._statuses: Counter[int] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        self._server = _Server(self)
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- behaviour -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def reply_to(self, request: Request, fault: Fault | None) -> Reply:
        """The answer to ``request``: the fault's reply if it has one, else the handler's; recorded.

        Front ends draw ``fault`` from :attr:`faults` and wait out its delay themselves (a thread
        blocks, an event loop awaits) before calling this."""
        reply = fault.reply if fault is not None and fault.reply is not None else self.handle(request)
        self.record(request, reply)
        return reply

    def record(self, request: Request, reply: Reply) -> None:
        with self._lock:
            self._statuses[reply.status] += 1
            if self.recording:
                self._requests.append((request, reply))

    @property
    def statuses(self) -> Counter[int]:
        """How many replies of each status were sent, recorded or not."""
        with self._lock:
            return Counter(self._statuses)

    @property
    def exchanges(self) -> list[tuple[Request, Reply]]:
        """Every request with the reply it got, in arrival order."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._statuses.clear()
        self.faults.clear()
