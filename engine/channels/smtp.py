"""Email over SMTP with ``smtplib``: ``smtp://user:pass@host:port`` or ``smtps://…``.

``smtps://`` speaks TLS from the first byte; ``smtp://`` connects in plain text and upgrades
with STARTTLS when the server offers it (certificates verified with the system's trust
store). Default ports: 25 for ``smtp://``, 465 for ``smtps://``. User and password are
percent-decoded from the URL and used only when present.

TLS, and the password (checked on every new connection, before anything else is sent):

* credentials are never sent without TLS: an ``smtp://`` server that offers no STARTTLS
  (or whose greeting lost it to an attacker in the path) gets no ``AUTH`` at all;
* with ``TIDINGS_SMTP_REQUIRE_TLS=true`` (the default) nothing is sent without TLS, with or
  without credentials; ``false`` allows a plain connection to a relay that needs none.

Either refusal is :class:`ChannelSuspended`, as is an ``AUTH`` the server refuses (535):
every message would meet the same answer until an operator changes a setting.

Connections: each dispatcher thread keeps one connection open and reuses it for every
message (the handshake, TLS and AUTH cost more than a message). A server closes idle
connections; when a reused connection turns out dead, it is reopened and the message
tried once more on the fresh one. A connection that failed in a way that leaves its
state unknown is dropped.

Classification of reply codes (RFC 5321): 4xx → :class:`TransientFailure` (greylisting,
mailbox busy, "try again later"); 5xx → :class:`PermanentFailure` (no such user, message
refused: the same message gets the same answer); connection errors and timeouts →
:class:`TransientFailure`.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from engine.channels.base import (
    ChannelSuspended,
    Now,
    PermanentFailure,
    PerThread,
    TransientFailure,
    check_address,
    one_line,
    system_now,
)
from engine.channels.mime import message_bytes, message_id_for
from engine.message import EmailMessage, SendResult
from engine.settings import Settings


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    """Where and how to connect, parsed from ``TIDINGS_SMTP_URL``."""

    host: str
    port: int
    use_ssl: bool
    username: str | None
    password: str | None
    timeout: float
    require_tls: bool = True

    @classmethod
    def from_url(cls, url: str, *, timeout: float, require_tls: bool = True) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtps"} or not parts.hostname:
            raise PermanentFailure("TIDINGS_SMTP_URL: expected smtp://user:pass@host:port or smtps://…")
        try:
            port = parts.port
        except ValueError:
            raise PermanentFailure("TIDINGS_SMTP_URL: the port is not a number") from None
        use_ssl = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if use_ssl else 25),
            use_ssl=use_ssl,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=timeout,
            require_tls=require_tls,
        )

    def __repr__(self) -> str:  # never show the password
        scheme = "smtps" if self.use_ssl else "smtp"
        return f"SmtpTarget({scheme}://{self.host}:{self.port})"


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class SmtpChannel:
    """Sends each message on this thread's connection; the provider id is the ``Message-ID``."""

    name = "smtp"

    def __init__(self, target: SmtpTarget, *, now: Now = system_now) -> None:
        self.target = target
        self._now = now
        self._connections: PerThread[smtplib.SMTP] = PerThread(self._connect, _quit)
        self._secrets = [s for s in (target.password,) if s]

    @classmethod
    def from_settings(cls, settings: Settings, *, now: Now = system_now) -> SmtpChannel:
        if settings.smtp_url is None:
            raise PermanentFailure("TIDINGS_SMTP_URL is not set")
        target = SmtpTarget.from_url(
            settings.smtp_url.get_secret_value(),
            timeout=settings.smtp_timeout_seconds,
            require_tls=settings.smtp_require_tls,
        )
        return cls(target, now=now)

    def _connect(self) -> smtplib.SMTP:
        target = self.target
        context = ssl.create_default_context()
        connection: smtplib.SMTP
        if target.use_ssl:
            connection = smtplib.SMTP_SSL(target.host, target.port, timeout=target.timeout, context=context)
        else:
            connection = smtplib.SMTP(target.host, target.port, timeout=target.timeout)
        try:
            connection.ehlo()
            secure = target.use_ssl
            if not secure and connection.has_extn("starttls"):
                connection.starttls(context=context)
                connection.ehlo()
                secure = True
            if not secure and target.username:
                raise ChannelSuspended(
                    f"SMTP {target!r} does not offer STARTTLS: credentials are never sent without TLS, "
                    "so nothing was sent (use smtps:// or a server with STARTTLS)"
                )
            if not secure and target.require_tls:
                raise ChannelSuspended(
                    f"SMTP {target!r} does not offer STARTTLS and TIDINGS_SMTP_REQUIRE_TLS is true: "
                    "nothing was sent (use smtps://, a server with STARTTLS, or allow a plain relay)"
                )
            if target.username:
                try:
                    connection.login(target.username, target.password or "")
                except smtplib.SMTPAuthenticationError as exc:
                    raise ChannelSuspended(
                        self._reason(f"SMTP {exc.smtp_code} (authentication failed): {_text(exc.smtp_error)}")
                    ) from None
                except smtplib.SMTPNotSupportedError:
                    raise ChannelSuspended(
                        f"SMTP {target!r} offers no AUTH, but TIDINGS_SMTP_URL has credentials"
                    ) from None
        except BaseException:
            _quit(connection)
            raise
        return connection

    def send(self, message: EmailMessage) -> SendResult:
        accepted_at = self._now()
        message_id = message_id_for(message)
        data = message_bytes(message, message_id=message_id, date=accepted_at)
        sender = check_address(message.from_email, "sender")
        recipient = check_address(message.to_email)
        for attempt in (1, 2):
            reused = self._connections.peek() is not None
            try:
                connection = self._connections.get()
                refused = connection.sendmail(
                    sender, [recipient], data, mail_options=_mail_options(connection, sender, recipient)
                )
            except smtplib.SMTPServerDisconnected as exc:
                self._connections.discard()
                if reused and attempt == 1:
                    continue  # the server closed our idle connection: one more try on a fresh one
                raise TransientFailure(self._reason(f"SMTP connection lost: {exc}")) from None
            except smtplib.SMTPRecipientsRefused as exc:
                code, said = exc.recipients.get(recipient, next(iter(exc.recipients.values()), (550, b"")))
                raise self._classify(code, said, f"recipient {recipient} refused") from None
            except smtplib.SMTPResponseException as exc:
                if exc.smtp_code == 421 or exc.smtp_code < 400:
                    self._connections.discard()  # 421: the server is closing the channel
                raise self._classify(exc.smtp_code, exc.smtp_error, _stage(exc)) from None
            except (smtplib.SMTPException, OSError) as exc:
                self._connections.discard()
                raise TransientFailure(
                    self._reason(f"SMTP {self.target!r} unreachable: {_describe(exc)}")
                ) from None
            if refused:  # only possible with several recipients; kept for completeness
                code, said = next(iter(refused.values()))
                raise self._classify(code, said, f"recipient {recipient} refused")
            return SendResult(provider_message_id=message_id, accepted_at=accepted_at, detail=None)
        raise TransientFailure("SMTP connection lost twice")  # unreachable: the loop returns or raises

    def _classify(self, code: int, said: bytes | str, what: str) -> Exception:
        reason = self._reason(f"SMTP {code} ({what}): {_text(said)}")
        if 500 <= code < 600:
            return PermanentFailure(reason)
        return TransientFailure(reason)

    def _reason(self, text: str) -> str:
        return one_line(text, self._secrets)

    def close(self) -> None:
        """QUIT every thread's connection."""
        self._connections.close_all()


def _mail_options(connection: smtplib.SMTP, sender: str, recipient: str) -> tuple[str, ...]:
    """``SMTPUTF8`` for an international address, as ``smtplib.send_message`` would ask for.

    The message itself is 7-bit (quoted-printable bodies, encoded headers); only an address
    with non-ASCII characters needs the extension, and a server without it cannot take
    the message now (:class:`smtplib.SMTPNotSupportedError`, handled as transient).
    """
    if sender.isascii() and recipient.isascii():
        return ()
    if not connection.has_extn("smtputf8"):
        raise smtplib.SMTPNotSupportedError("the server does not support SMTPUTF8 (international address)")
    return ("SMTPUTF8", "BODY=8BITMIME")


def _stage(exc: smtplib.SMTPResponseException) -> str:
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return "sender refused"
    if isinstance(exc, smtplib.SMTPDataError):
        return "message refused"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "authentication failed"
    if isinstance(exc, smtplib.SMTPHeloError):
        return "greeting refused"
    return "refused"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _quit(connection: smtplib.SMTP) -> None:
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        connection.close()
