"""A real SMTP server on 127.0.0.1 (aiosmtpd) that records what it receives.

Optional AUTH (PLAIN/LOGIN). With ``tls_context`` the server offers STARTTLS, requires it,
and offers AUTH only once the connection is encrypted, as a well-run server does; without
one it is the server a careless provider runs: AUTH offered on the plain connection, no
STARTTLS (``auth_attempts`` records every AUTH command it received, and whether it came
over TLS, so a test can prove that no password crossed in clear);
per-recipient refusals (``server.refuse("a@x.org", "450 4.2.1 Mailbox busy")``),
one-shot refusals of the next message (``server.refuse_next_data("554 5.7.1 Rejected")``)
and dropping every open connection (``server.drop_connections()``), which is what a
server does to an idle client.

Use as a context manager; ``server.url(user, password)`` is a ``TIDINGS_SMTP_URL``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Self
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class AuthAttempt:
    """An AUTH command as the server received it (its argument carries PLAIN credentials)."""

    argument: str
    tls: bool


@dataclass(frozen=True)
class ReceivedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None
    tls: bool = False

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _Handler:
    def __init__(self, owner: SmtpServer) -> None:
        self.owner = owner

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.owner.username is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        refusal = self.owner.refusal_for(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        refusal = self.owner.next_data_refusal()
        if refusal:
            return refusal
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        content = envelope.original_content or b""
        tls = session.ssl is not None or self.owner.implicit_tls
        self.owner.record(
            ReceivedEmail(str(envelope.mail_from), tuple(envelope.rcpt_tos), content, login, tls)
        )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: learn the real port before the readiness probe connects."""

    def __init__(self, owner: SmtpServer, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(_Handler(owner), hostname="127.0.0.1", port=0, **kwargs)

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()

    def factory(self) -> SMTP:
        smtp = _RecordingSMTP(self.owner, self.handler, **self.SMTP_kwargs)
        self.owner.sessions.append(smtp)
        return smtp


class _RecordingSMTP(SMTP):
    """aiosmtpd's session, noting each AUTH command before handling it."""

    def __init__(self, owner: SmtpServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner

    async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802 - aiosmtpd's command method
        tls = self._tls_protocol is not None or self.owner.implicit_tls
        self.owner.record_auth(AuthAttempt(arg, tls))
        await super().smtp_AUTH(arg)


class SmtpServer:
    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        """With ``tls_context`` the server offers STARTTLS, refuses to go on without it and offers AUTH
        only after it; with ``implicit_tls`` too, it speaks TLS from the first byte (``smtps://``).
        Without ``tls_context``, AUTH is offered on the plain connection."""
        self.username = username
        self.password = password
        self._lock = threading.Lock()
        self._received: list[ReceivedEmail] = []
        self._refusals: dict[str, str] = {}
        self._data_refusals: deque[str] = deque()
        self._auth_attempts: list[AuthAttempt] = []
        self.sessions: list[SMTP] = []
        kwargs: dict[str, Any] = {}
        if username is not None:
            # The MAIL hook refuses senders that did not authenticate, which is what auth_required
            # would do, minus its warning. Without TLS, AUTH is offered in clear (the careless server).
            # (With implicit TLS every byte is encrypted already: aiosmtpd's check only knows STARTTLS.)
            starttls = tls_context is not None and not implicit_tls
            kwargs = {"authenticator": self._authenticate, "auth_require_tls": starttls}
        self.implicit_tls = implicit_tls and tls_context is not None
        if tls_context is not None and self.implicit_tls:
            kwargs["ssl_context"] = tls_context
        elif tls_context is not None:
            kwargs |= {"tls_context": tls_context, "require_starttls": True}
        self._controller = _Controller(self, **kwargs)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        # handled=False: aiosmtpd then answers 235 or 535 itself (handled=True would answer nothing).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def url(self, username: str | None = None, password: str | None = None) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        if username is None:
            return f"{scheme}://127.0.0.1:{self.port}"
        return f"{scheme}://{quote(username, safe='')}:{quote(password or '', safe='')}@127.0.0.1:{self.port}"

    # -- faults --------------------------------------------------------------------------------------

    def refuse(self, address: str, reply: str) -> None:
        """Answer RCPT TO for ``address`` with ``reply`` (e.g. ``"550 5.1.1 No such user"``)."""
        with self._lock:
            self._refusals[address.lower()] = reply

    def refusal_for(self, address: str) -> str | None:
        with self._lock:
            return self._refusals.get(address.lower())

    def refuse_next_data(self, reply: str) -> None:
        """Answer the next message's DATA with ``reply`` (e.g. ``"451 4.3.0 Try again later"``)."""
        with self._lock:
            self._data_refusals.append(reply)

    def next_data_refusal(self) -> str | None:
        with self._lock:
            return self._data_refusals.popleft() if self._data_refusals else None

    def drop_connections(self) -> None:
        """Close every client connection from the server side, and wait until they are closed."""

        async def close_all() -> None:
            for session in self.sessions:
                if session.transport is not None and not session.transport.is_closing():
                    session.transport.close()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close_all(), self._controller.loop).result(timeout=5)

    # -- recordings ----------------------------------------------------------------------------------

    def record_auth(self, attempt: AuthAttempt) -> None:
        with self._lock:
            self._auth_attempts.append(attempt)

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        with self._lock:
            return list(self._auth_attempts)

    def record(self, email: ReceivedEmail) -> None:
        with self._lock:
            self._received.append(email)

    @property
    def received(self) -> list[ReceivedEmail]:
        with self._lock:
            return list(self._received)

    @property
    def connections(self) -> int:
        """How many SMTP sessions were opened (the readiness probe included)."""
        return len(self.sessions)
