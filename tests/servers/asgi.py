"""Serve a compatible server's behaviour as an ASGI app, for uvicorn in a process of its own.

The tests start :class:`~servers.httpbase.FakeHttpService` subclasses in-process on the
stdlib's threaded server. A benchmark needs a front end that is not itself the limit: the
stdlib server spends a thread per connection and parses every header block with
``email.parser``. :func:`asgi_app` answers requests with the very same
:meth:`~servers.httpbase.FakeHttpService.reply_to` (scripted and random faults, the
handler, recordings), so a benchmark measures the server the tests trust. A fault's delay
is awaited, not slept, so one slow reply does not stall the loop.

:func:`serve` runs the app under uvicorn on an already bound socket until told to stop; several processes may
serve one port when each binds it with ``SO_REUSEPORT`` (:func:`bind_reusable`), and the
kernel spreads the connections between them.

Example::

    sock = bind_reusable(0)
    serve(SendGridServer(api_key="SG.k", recording=False), sock, until=stop_event.wait)
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .httpbase import FakeHttpService, Request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def _header_name(raw: bytes) -> str:
    """ASGI lower-cases header names; give them the usual spelling (``Content-Type``), as the
    stdlib server passes them on, since recordings keep them."""
    return "-".join(part.capitalize() for part in raw.decode("latin-1").split("-"))


def asgi_app(service: FakeHttpService) -> App:
    """An ASGI app answering every HTTP request with ``service``'s behaviour."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        headers = {_header_name(name): value.decode("latin-1") for name, value in scope["headers"]}
        request = Request(scope["method"], path, headers, b"".join(chunks))
        fault = service.faults.next()
        if fault is not None and fault.delay:
            await asyncio.sleep(fault.delay)
        reply = service.reply_to(request, fault)
        data = reply.data()
        out = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
        if data:
            out.append((b"content-type", b"application/json"))
        out.append((b"content-length", str(len(data)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": out})
        await send({"type": "http.response.body", "body": data})

    return app


def bind_reusable(port: int = 0, host: str = "127.0.0.1", backlog: int = 2048) -> socket.socket:
    """A listening socket with ``SO_REUSEPORT``: other processes may bind the same port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def serve(service: FakeHttpService, sock: socket.socket, until: Callable[[], object]) -> None:
    """Serve ``service`` on ``sock`` with uvicorn (uvloop and httptools) until ``until()``, called in
    a thread of its own, returns (``stop_event.wait``); then return, so the caller can report what
    the service counted."""
    import uvicorn

    config = uvicorn.Config(
        asgi_app(service),
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)

    def watch() -> None:
        until()
        server.should_exit = True

    threading.Thread(target=watch, name="stop-watch", daemon=True).start()
    server.run(sockets=[sock])
