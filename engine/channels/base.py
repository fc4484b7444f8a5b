"""What a channel is: send one rendered message, return an outcome or a classified error.

Every backend (``outbox``, ``sendgrid``, ``smtp``, ``x``) implements one of the two
protocols below and nothing else in the engine knows which one is in use. A channel
never retries, sleeps or rate-limits by itself: it reports what the provider said, as
one of the classified errors below, and the runtime decides what happens next.

Classification (the same rule for every provider, written down here once):

==========================  ===================================================  ===========================
error                       what produces it                                     what the runtime does
==========================  ===================================================  ===========================
:class:`PermanentFailure`   HTTP 4xx other than 401/402/403/429 (400 invalid     fail the row now, keep the
                            request, 413 too large, X's 403 other than           provider's message
                            duplicate); SMTP 5xx replies; an invalid address or
                            header found before anything is sent
:class:`DuplicatePost`      X's 403 "duplicate content" (a PermanentFailure)     fail the row, unless the
                                                                                 row's previous attempt
                                                                                 timed out: then the post
                                                                                 was published, record sent
:class:`TransientFailure`   HTTP 5xx, timeouts, refused / reset connections,     retry with backoff
                            SMTP 4xx replies, a dropped SMTP connection; a read
                            timeout after the request went out is the subclass
                            :class:`OutcomeUnknown`
:class:`RateLimited`        HTTP 429, with the provider's reset when it sent     retry no earlier than the
                            one (SendGrid ``Retry-After`` / ``X-RateLimit-       provider's reset
                            Reset``, X's ``x-rate-limit-reset`` epoch, or X's
                            ``x-user-limit-24hour-reset`` when the daily cap is
                            spent)
:class:`ChannelSuspended`   the channel itself cannot send, whatever the         stop claiming rows for the
                            message: SendGrid 401/403 (bad or revoked key), X    channel until ``until`` (or
                            402 (credits exhausted) and 401 (bad credentials),   an operator resumes it);
                            SMTP authentication refused, an SMTP server without  leave this row to be sent
                            STARTTLS while TLS is required                       then: it was not refused
==========================  ===================================================  ===========================

Why this split: resending a message the provider refused on its merits (a malformed
address, a duplicate post) only repeats the refusal and, for reputation, looks like a
spammer hammering the API; anything that says "not now" (429, 5xx, a timeout, SMTP's 4xx
"try again later") usually succeeds on a later attempt; and an answer that every message
would get (a revoked key, no credits left) is about the channel, not the message: failing
each row in turn would burn every pending message's attempts on one broken setting, so
the whole channel pauses with one named reason instead.

Warning: a timeout is transient although the provider may have accepted the message
before the connection dropped (:class:`OutcomeUnknown` says so where the channel can tell
that the request went out). The retry may then deliver twice; the caller reduces the harm
where the protocol allows it: an email keeps the ``Message-ID`` the caller set
(:attr:`engine.message.EmailMessage.message_id`, one per outbox row) on every attempt, which
mailbox providers de-duplicate on, and X answers a repeated post with :class:`DuplicatePost`.

Error texts are one line, at most :data:`MAX_REASON` characters, and pass through
:func:`one_line`, which removes every secret the channel knows (API keys, passwords)
before the text can reach a log, the outbox row or the terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import idna

from engine.errors import TidingsError
from engine.message import EmailMessage, SendResult, SocialPost

MAX_REASON = 500
DELIVERY_HEADER = "X-Tidings-Delivery"
CAMPAIGN_HEADER = "X-Tidings-Campaign"

Now = Callable[[], datetime]
"""Where a channel reads the time: pass ``clock.now`` (``engine.clock``); tests pass a fake clock's."""


def system_now() -> datetime:
    """The wall clock in UTC, for channels built without an injected clock."""
    return datetime.now(UTC)


# --- classified errors -------------------------------------------------------------------------


class ChannelError(TidingsError):
    """A message was not accepted. ``reason`` is one line, free of secrets, with the provider's words.

    It is a :class:`TidingsError` so that ``tidings send-test`` prints it as one line
    (exit 1: the command ran, the provider said no).
    """

    exit_code = 1

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, exit_code=1)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle with every field (Celery workers hand errors across processes).
        return type(self), (self.reason,)


class PermanentFailure(ChannelError):
    """The provider refused this message on its merits: sending it again gives the same answer.

    Never retried. Produced by: HTTP 4xx other than 401/402/403/429 (those that concern the
    whole channel are :class:`ChannelSuspended`), X's 403 for duplicate content
    (:class:`DuplicatePost`), SMTP 5xx replies, and an address or header the channel finds
    invalid before sending anything.
    """


class TransientFailure(ChannelError):
    """The provider could not take the message now; a later attempt may succeed.

    Produced by: HTTP 5xx, timeouts, refused or reset connections, SMTP 4xx replies and a
    dropped SMTP connection. ``retry_after`` (seconds) is set when the provider said how long
    to wait; otherwise the dispatcher's own backoff applies.
    """

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.retry_after)


class OutcomeUnknown(TransientFailure):
    """The request went out but no answer came back (a read timeout): the provider may have taken it.

    Retried like any transient failure. The runtime should remember that this row's last
    attempt ended this way: if the next attempt is refused as a :class:`DuplicatePost`, the
    first one was published, and the row is sent.
    """


class RateLimited(TransientFailure):
    """HTTP 429: the provider's rate limit is exhausted. Retry, but not before its reset.

    ``reset_at`` is the provider's reset instant (timezone-aware) when it sent one:
    SendGrid's ``X-RateLimit-Reset`` or X's ``x-rate-limit-reset`` epoch, or now plus
    ``Retry-After``. ``retry_after`` is the same moment as seconds from now. Both are
    ``None`` when the provider gave no hint (SendGrid's mail send often does not).
    """

    def __init__(
        self, reason: str, retry_after: float | None = None, reset_at: datetime | None = None
    ) -> None:
        super().__init__(reason, retry_after)
        self.reset_at = reset_at

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.retry_after, self.reset_at)


class DuplicatePost(PermanentFailure):
    """X refused the post as a duplicate of one already published on the account.

    Permanent for a new post. But when the same outbox row's previous attempt ended in a
    timeout, the provider most likely published it before the connection dropped: the
    runtime then records the row as sent (the duplicate answer is the confirmation).
    """


class ChannelSuspended(ChannelError):
    """The channel cannot send any message until an operator acts (or until ``until``).

    ``reason`` names the cause in the provider's terms ("X credits exhausted", "SendGrid 401:
    the API key is invalid, expired or revoked"); ``until`` is a timezone-aware moment when
    the provider said the condition ends by itself, else None. The message that met it was
    not refused on its merits: it should be sent once the channel is resumed.
    """

    def __init__(self, reason: str, until: datetime | None = None) -> None:
        super().__init__(reason)
        self.until = until

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason, self.until)


# --- the protocols -------------------------------------------------------------------------------


@runtime_checkable
class EmailChannel(Protocol):
    """Sends one rendered email to its one recipient.

    ``send`` returns a :class:`SendResult` with the provider's message id once the
    provider has accepted the message, or raises :class:`PermanentFailure`,
    :class:`TransientFailure`, :class:`RateLimited` or :class:`ChannelSuspended`. It is safe to call from many
    threads at once (the dispatcher uses up to ``TIDINGS_CONCURRENCY``). ``close``
    releases connections; the channel must not be used afterwards.
    """

    name: str

    def send(self, message: EmailMessage) -> SendResult: ...

    def close(self) -> None: ...


@runtime_checkable
class SocialChannel(Protocol):
    """Publishes one rendered social post (a broadcast); same contract as :class:`EmailChannel`."""

    name: str

    def post(self, post: SocialPost) -> SendResult: ...

    def close(self) -> None: ...


# --- helpers every backend shares -----------------------------------------------------------------


def one_line(text: object, secrets: Iterable[str] = ()) -> str:
    """``text`` as one line of at most :data:`MAX_REASON` characters with every secret replaced by ``***``."""
    line = " ".join(str(text).split())
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        line = line.replace(secret, "***")
    if len(line) > MAX_REASON:
        line = line[: MAX_REASON - 1] + "…"
    return line


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name (renderers and callers differ)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


_DOMAIN_CHAR = r"A-Za-z0-9\u00a0-\uffff"
_ADDRESS = re.compile(rf"^[^@\s<>()\[\],;:\"\\]+@[{_DOMAIN_CHAR}]([{_DOMAIN_CHAR}.-]*[{_DOMAIN_CHAR}])?$")


def check_address(address: str, role: str = "recipient") -> str:
    """``address`` as every channel sends to it, if it is a plain ``local@domain.tld`` address.

    The domain must have a dot: a bare host name (``ana@example``) is not deliverable on
    the internet, and in a shop's contact list it is always a typo. An international domain
    is given in its ASCII (IDNA) form, so the envelope, the ``To:`` header and a provider's
    API all name the same mailbox and no server needs SMTPUTF8 for it (the importer stores
    addresses that way already; this covers older rows).

    Checked before any provider is called: a malformed address (or one carrying a line
    break, which would inject headers) can never become deliverable, and finding it here
    keeps the provider's view of our sending clean. Else :class:`PermanentFailure`.
    """
    candidate = address.strip()
    local, _, domain = candidate.rpartition("@")
    if len(candidate) > 254 or not _ADDRESS.match(candidate) or ".." in domain or "." not in domain:
        raise PermanentFailure(f"invalid {role} address {candidate[:80]!r}")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            raise PermanentFailure(f"invalid {role} address {candidate[:80]!r} (domain)") from None
        candidate = f"{local}@{domain}"
    return candidate


T = TypeVar("T")


class PerThread(Generic[T]):
    """One lazily made object per thread (a client, a connection), all of them closable at once.

    Used where a library object is not safe to share between the dispatcher's threads
    (urllib-based SendGrid client headers, ``requests`` sessions, ``smtplib`` connections).
    """

    def __init__(self, factory: Callable[[], T], closer: Callable[[T], None] | None = None) -> None:
        self._factory = factory
        self._closer = closer
        self._local = threading.local()
        self._all: list[T] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        item: T | None = getattr(self._local, "item", None)
        if item is None:
            item = self._factory()
            self._local.item = item
            with self._lock:
                self._all.append(item)
        return item

    def peek(self) -> T | None:
        """This thread's object if it has one, without making it."""
        item: T | None = getattr(self._local, "item", None)
        return item

    def discard(self) -> None:
        """Forget (and close) this thread's object, so the next :meth:`get` makes a new one."""
        item: T | None = getattr(self._local, "item", None)
        if item is None:
            return
        self._local.item = None
        with self._lock:
            if item in self._all:
                self._all.remove(item)
        self._close(item)

    def close_all(self) -> None:
        with self._lock:
            items, self._all = self._all, []
        for item in items:
            self._close(item)
        self._local = threading.local()

    def _close(self, item: T) -> None:
        if self._closer is not None:
            # Closing is best effort: the object is dropped either way.
            with contextlib.suppress(Exception):
                self._closer(item)


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def safe_token(value: str) -> str:
    """``value`` usable as a file name and a ``Message-ID`` local part; stable for the same input.

    Plain ids (``1234``, ``d-9f3``) are kept as they are, so an operator can find the outbox
    file of a delivery by its id; anything else keeps its harmless characters plus a short
    hash, so two different ids never collapse into one name.
    """
    if _SAFE_NAME.fullmatch(value):
        return value
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip(".-")[:60]
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
    return f"{cleaned}-{digest}" if cleaned else digest


def rate_limit_hint(
    now: datetime, *, retry_after: str | None = None, reset_epoch: str | None = None
) -> tuple[float | None, datetime | None]:
    """``(seconds to wait, reset instant)`` from a provider's ``Retry-After`` or reset-epoch header.

    ``Retry-After`` may be delta-seconds or an HTTP date (RFC 9110); a reset header holds
    Unix epoch seconds (SendGrid's ``X-RateLimit-Reset``, X's ``x-rate-limit-reset``).
    ``Retry-After`` wins when both are present, being the more specific instruction.
    Unparsable values count as absent: the dispatcher's backoff then applies.
    """
    if retry_after:
        value = retry_after.strip()
        try:
            seconds = max(0.0, float(value))
            return seconds, now + timedelta(seconds=seconds)
        except ValueError:
            try:
                moment = parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                moment = None
            if moment is not None:
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
                return max(0.0, (moment - now).total_seconds()), moment
    if reset_epoch:
        try:
            moment = datetime.fromtimestamp(float(reset_epoch.strip()), UTC)
        except (ValueError, OverflowError, OSError):
            return None, None
        return max(0.0, (moment - now).total_seconds()), moment
    return None, None
