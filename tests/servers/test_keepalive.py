"""The SendGrid channel keeps connections alive, and replaces one the server closed while it was idle."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from engine.channels.sendgrid import SendGridChannel
from engine.message import EmailMessage


def _message() -> EmailMessage:
    return EmailMessage(
        to_email="ana@example.ro",
        subject="Hello",
        html="<p>Hello</p>",
        text="Hello",
        from_email="hello@shop.example.com",
    )


class _CountingServer:
    """Answers every request with 202 and counts connections. With ``close_after_reply`` it
    closes each connection after one reply without saying so first (no ``Connection: close``),
    as a server whose keep-alive timeout ran out does."""

    def __init__(self, *, close_after_reply: bool) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.close_after_reply = close_after_reply
        self.connections = 0
        self.replies = 0
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                pending = b""
                while (request := self._read_request(conn, pending)) is not None:
                    pending = request
                    self.replies += 1
                    reply = (
                        f"HTTP/1.1 202 Accepted\r\nX-Message-Id: m{self.replies}\r\nContent-Length: 0\r\n\r\n"
                    )
                    conn.sendall(reply.encode())
                    if self.close_after_reply:
                        break
            self.closed.set()

    @staticmethod
    def _read_request(conn: socket.socket, data: bytes) -> bytes | None:
        """Read one request; returns what was read past it, or None when the client closed."""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += conn.recv(65536)
        return body[length:]

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def closing_server() -> Iterator[_CountingServer]:
    server = _CountingServer(close_after_reply=True)
    yield server
    server.close()


@pytest.fixture
def keep_alive_server() -> Iterator[_CountingServer]:
    server = _CountingServer(close_after_reply=False)
    yield server
    server.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_not_reported_as_a_failure(
    closing_server: _CountingServer,
) -> None:
    channel = SendGridChannel("SG.key", host=closing_server.url, timeout=5)

    first = channel.send(_message())
    assert closing_server.closed.wait(5)
    second = channel.send(_message())
    channel.close()

    assert (first.provider_message_id, second.provider_message_id) == ("m1", "m2")
    assert closing_server.connections == 2


def test_messages_sent_from_one_thread_share_one_connection(keep_alive_server: _CountingServer) -> None:
    channel = SendGridChannel("SG.key", host=keep_alive_server.url, timeout=5)

    ids = [channel.send(_message()).provider_message_id for _ in range(5)]
    channel.close()

    assert ids == ["m1", "m2", "m3", "m4", "m5"]
    assert keep_alive_server.connections == 1
