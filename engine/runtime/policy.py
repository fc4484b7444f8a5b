"""The policy gate: may this message go to this person now?

Every refusal has a name, recorded in ``delivery.reason`` (or the log), in the spirit
of Jinja2's sandbox: the rules are written down here and nowhere else.

Checks, in order (the first that refuses wins):

``cancelled``
    The operator cancelled the campaign (``tidings cancel``). Skipped, not lost: the
    row stays in the outbox with this reason.
*hold*
    The campaign is paused (YAML ``status: paused`` or ``tidings pause``) or a draft.
    Nothing is sent and nothing is skipped: the row goes back to ``pending`` and
    ``tidings resume`` sends it. Rows of held campaigns are not even claimed; this
    check only catches a pause that lands between claim and send.
``no_contact``
    The contact was deleted (or forgotten) after planning.
``outside_window``
    Today, in the campaign's zone, is outside the campaign's ``window``.
``suppressed:<reason>``
    The address is suppressed on this channel or on ``all``. An ``unsubscribe``
    blocks marketing only; ``hard_bounce``, ``spam_report``, ``manual`` and
    ``forgotten`` (and any reason this code does not know) block transactional mail
    too, because mailing a dead or complaining address hurts every later send.
``no_consent``
    Marketing needs an open consent row (``withdrawn_at`` empty) for the channel — or, for a
    campaign relying on the EU soft opt-in (``consent: {email: existing_customer}``), a
    customer with a previous purchase who never withdrew consent on the channel.
    Transactional messages need neither.
``topic_opt_out:<topic>``
    A marketing campaign with ``topic:`` and a contact who left that topic on the preferences
    page (they keep the other topics). Skipped.
``snoozed``
    The contact paused marketing ("pause until 6 January") and the pause has not ended in their
    zone. Skipped, not delayed: promotions saved up during a pause would all land on its last day.
``held:return_open`` / ``held:claim_open``
    The campaign holds promotions while a return (or exchange) or a claim of the contact is open
    (``limits.hold_marketing_while``, else ``TIDINGS_HOLD_MARKETING_WHILE``, both by default; what
    "open" means is :mod:`engine.runtime.cases`). Skipped, not delayed: an offer that waited for
    the end of a claim would arrive stale, and at the very moment the customer is least pleased.
``frequency_cap``
    The contact already received ``max`` marketing messages (from any campaign) in
    the last ``per``. Counts sends approved earlier in the same batch as well. The rule is
    written once, in Python (:meth:`FrequencyCap.reached`) and as SQL (:func:`capped_sql`,
    for ``plan``'s counts) side by side.
``frequency_cap:yielded_to:<campaign>``
    A capped campaign's message gives way to a campaign of higher ``priority``: it is skipped
    when sending it would leave no free slot for a waiting marketing message of that campaign
    (pending in the outbox, due before this send stops counting against its cap). The dispatcher
    gates a batch highest priority first, so a higher-priority row claimed in the same batch is
    approved before the lower one is judged. Equal priorities: first come, first served.
    ``plan`` forecasts both with the same two functions (:mod:`engine.runtime.collisions`).
``quiet_hours``
    It is inside the campaign's quiet hours in the contact's zone: with
    ``action: delay`` the row waits until the quiet hours end (*defer*); with
    ``action: skip`` it is skipped.

Transactional messages are never refused for a topic, a pause or a hold.

Broadcast posts have no recipient: :func:`decide_post` applies the campaign-level checks only
(cancelled, held, outside the window).

The decision functions are pure (no I/O); :func:`load_recipient_facts` is the one
small set of bulk queries that feeds them for a whole batch. Quiet hours are judged in the zone
the planner decided for the message (its facts), the zone its send time was computed in.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Table, and_, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from engine.runtime.cases import open_cases
from engine.settings import HOLD_REASONS, Settings
from engine.store.models import Consent, Contact, Delivery, DeliveryState, Snooze, Suppression, TopicOptOut
from engine.store.suppressions import ALL_CHANNELS, SEVERITY, blocks, email_digest
from engine.workspace.models import Campaign

Action = Literal["send", "skip", "defer", "hold"]

UNSUBSCRIBE = "unsubscribe"
MARKETING = "marketing"
TRANSACTIONAL = "transactional"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str | None = None
    until: datetime | None = None

    @property
    def sends(self) -> bool:
        return self.action == "send"


SEND = Decision("send")
HOLD = Decision("hold", "paused")


def skip(reason: str) -> Decision:
    return Decision("skip", reason)


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    action: Literal["delay", "skip"] = "delay"

    def contains(self, local: time) -> bool:
        """Whether a local wall-clock time falls inside; the window may wrap past midnight."""
        moment = local.replace(tzinfo=None)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    def ends_after(self, now_local: datetime) -> datetime:
        """The first instant after ``now_local`` at which the quiet hours end, in its zone."""
        zone = now_local.tzinfo
        candidate = datetime.combine(now_local.date(), self.end, tzinfo=zone)
        if candidate <= now_local:
            candidate = datetime.combine(now_local.date() + timedelta(days=1), self.end, tzinfo=zone)
        return candidate


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``max`` marketing messages per contact in any ``per``, across marketing campaigns."""

    max: int
    per: timedelta

    def reached(self, sends: Iterable[datetime], now: datetime) -> bool:
        since = now - self.per
        return sum(1 for sent in sends if sent > since) >= self.max


@dataclass(frozen=True, slots=True)
class Rival:
    """A marketing message waiting for the same contact, of a campaign that may outrank this one."""

    campaign_id: str
    priority: int
    due: datetime
    cap: FrequencyCap | None  # its own campaign's cap: the slot it will need


def yielded_to(
    sends: Sequence[datetime], now: datetime, priority: int, rivals: Iterable[Rival]
) -> str | None:
    """The higher-priority campaign whose waiting message a send at ``now`` would crowd out, or None.

    The rivals of higher priority are walked in the order they fall due (at ``now`` at the
    earliest), each admitted if its own cap leaves it a slot; a send now crowds one out when that
    rival would have had a slot without it and has none with it. A rival due after this send has
    left its cap window is not touched by it. Pure: the gate and ``plan``'s forecast both call it.
    """
    admitted = list(sends)
    for rival in sorted((r for r in rivals if r.priority > priority), key=lambda r: (r.due, -r.priority)):
        cap = rival.cap
        at = max(rival.due, now)
        if cap is None or at >= now + cap.per or cap.reached(admitted, at):
            continue
        if cap.reached([*admitted, now], at):
            return rival.campaign_id
        admitted.append(at)
    return None


def _marketing_sent(delivery: Table, since: datetime) -> ColumnElement[bool]:
    """Delivery rows that count towards a frequency cap: marketing, sent after ``since``."""
    return and_(
        delivery.c.state == DeliveryState.sent.value,
        delivery.c.category == MARKETING,
        delivery.c.sent_at > since,
    )


def capped_sql(cap: FrequencyCap, reference: datetime) -> ColumnElement[bool]:
    """:meth:`FrequencyCap.reached` as a condition over ``contact`` (correlated), at ``reference``."""
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    contact = Contact.__table__  # type: ignore[attr-defined]
    recent = (
        select(func.count())
        .select_from(delivery)
        .where(
            delivery.c.contact_id == contact.c.id,
            _marketing_sent(delivery, reference - cap.per),
            delivery.c.sent_at <= reference,
        )
        .scalar_subquery()
    )
    return recent >= cap.max


@dataclass(frozen=True, slots=True)
class CampaignRules:
    """What the gate needs to know about a campaign, independent of how it was loaded."""

    campaign_id: str
    category: str = MARKETING
    status: str = "active"  # YAML status: active | paused | draft
    control: str = "active"  # operator override: active | paused | cancelled
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    window: tuple[date, date] | None = None
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    basis: str = "consent"  # the legal basis for marketing: consent | existing_customer
    topic: str | None = None
    holds: frozenset[str] = frozenset()  # return_open, claim_open: promotions skip those contacts
    priority: int = 0  # higher wins a capped slot (``yielded_to``)

    @property
    def marketing(self) -> bool:
        return self.category != TRANSACTIONAL

    @property
    def held(self) -> bool:
        return self.control == "paused" or self.status in {"paused", "draft"}


@dataclass(slots=True)
class RecipientFacts:
    """What the store says about one contact, for one channel."""

    contact_id: int
    email: str
    zone: ZoneInfo | None = None
    consented_channels: frozenset[str] = frozenset()
    withdrawn_channels: frozenset[str] = frozenset()  # opted out once (a withdrawn consent row)
    customer: bool = False  # bought from the shop before (the soft opt-in's condition)
    suppressions: tuple[tuple[str, str], ...] = ()  # (channel, reason)
    marketing_sends: list[datetime] = field(default_factory=list)
    left_topics: frozenset[str] = frozenset()
    snoozed_until: datetime | None = None
    open_cases: frozenset[str] = frozenset()  # return_open, claim_open (engine.runtime.cases)
    #: Marketing messages of other campaigns waiting for this contact (higher priority than the
    #: lowest in the batch), and rows of the batch deferred by quiet hours.
    rivals: list[Rival] = field(default_factory=list)


def suppression_blocks(*, reason: str, suppressed_channel: str, channel: str, marketing: bool) -> bool:
    """Whether one suppression row stops a message on ``channel``.

    The rules are :mod:`engine.store.suppressions`' (shared with the audience compiler)."""
    if suppressed_channel not in (channel, ALL_CHANNELS):
        return False
    return blocks(reason, MARKETING if marketing else TRANSACTIONAL)


def blocking_suppression(facts: RecipientFacts, channel: str, marketing: bool) -> str | None:
    """The strongest suppression reason that blocks this message, or None."""
    blocking = [
        reason
        for suppressed_channel, reason in facts.suppressions
        if suppression_blocks(
            reason=reason, suppressed_channel=suppressed_channel, channel=channel, marketing=marketing
        )
    ]
    if not blocking:
        return None
    return max(blocking, key=lambda reason: SEVERITY.get(reason, 0))


def outside_window(rules: CampaignRules, now: datetime) -> bool:
    if rules.window is None:
        return False
    today = now.astimezone(rules.zone).date()
    start, end = rules.window
    return today < start or today > end


def decide(
    rules: CampaignRules,
    facts: RecipientFacts | None,
    *,
    channel: str,
    now: datetime,
    zone: ZoneInfo | None = None,
) -> Decision:
    """The gate for one message; see the module docstring for each named refusal.

    ``zone`` is the zone the message was planned in (its facts); without one, the contact's own.
    """
    if rules.control == "cancelled":
        return skip("cancelled")
    if rules.held:
        return HOLD if rules.control == "paused" or rules.status == "paused" else Decision("hold", "draft")
    if facts is None:
        return skip("no_contact")
    if outside_window(rules, now):
        return skip("outside_window")
    suppressed = blocking_suppression(facts, channel, rules.marketing)
    if suppressed is not None:
        return skip(f"suppressed:{suppressed}")
    if rules.marketing and not _permitted(rules, facts, channel):
        return skip("no_consent")
    if rules.marketing:
        held = _held(rules, facts, now)
        if held is not None:
            return skip(held)
    cap = rules.frequency_cap
    if rules.marketing and cap is not None:
        if cap.reached(facts.marketing_sends, now):
            return skip("frequency_cap")
        winner = yielded_to(facts.marketing_sends, now, rules.priority, facts.rivals)
        if winner is not None:
            return skip(f"frequency_cap:yielded_to:{winner}")
    quiet = rules.quiet_hours
    if quiet is not None:
        local = now.astimezone(zone or facts.zone or rules.zone)
        if quiet.contains(local.timetz()):
            if quiet.action == "skip":
                return skip("quiet_hours")
            return Decision("defer", "quiet_hours", quiet.ends_after(local))
    return SEND


def _permitted(rules: CampaignRules, facts: RecipientFacts, channel: str) -> bool:
    if channel in facts.consented_channels:
        return True
    soft = rules.basis == "existing_customer"
    return soft and facts.customer and channel not in facts.withdrawn_channels


def _held(rules: CampaignRules, facts: RecipientFacts, now: datetime) -> str | None:
    """The contact's own reason to get no promotion now: a topic left, a pause, an open case."""
    if rules.topic is not None and rules.topic in facts.left_topics:
        return f"topic_opt_out:{rules.topic}"
    if facts.snoozed_until is not None and now < facts.snoozed_until:
        return "snoozed"
    for case in HOLD_REASONS:
        if case in rules.holds and case in facts.open_cases:
            return f"held:{case}"
    return None


def reason_group(reason: str | None) -> str:
    """The name reports count a skip under: the refusal's name (``suppressed:unsubscribe`` →
    ``suppressed``, ``topic_opt_out:offers`` → ``topic_opt_out``), except that a hold keeps what
    was open (``held:claim_open``): which case held the promotion is what the reader asks."""
    if not reason:
        return "unknown"
    return reason if reason.startswith("held:") else reason.split(":")[0]


def decide_post(rules: CampaignRules, now: datetime) -> Decision:
    """The gate for a broadcast post: only the campaign-level checks apply (no recipient)."""
    if rules.control == "cancelled":
        return skip("cancelled")
    if rules.held:
        return HOLD if rules.control == "paused" or rules.status == "paused" else Decision("hold", "draft")
    if outside_window(rules, now):
        return skip("outside_window")
    return SEND


def note_sent(facts: RecipientFacts, rules: CampaignRules, now: datetime) -> None:
    """Count an approved marketing send, so the next message in the same batch sees the cap."""
    if rules.marketing:
        facts.marketing_sends.append(now)


def note_deferred(facts: RecipientFacts, rules: CampaignRules, until: datetime) -> None:
    """A marketing row of the batch that waits (quiet hours) still claims its slot from lower
    priorities later in the batch: it becomes one of the contact's rivals."""
    if rules.marketing:
        facts.rivals.append(Rival(rules.campaign_id, rules.priority, until, rules.frequency_cap))


def batch_order(priority: int, scheduled_for: datetime, row_id: int) -> tuple[int, datetime, int]:
    """The order a claimed batch is gated in: highest priority first, then oldest due, then id."""
    return (-priority, scheduled_for, row_id)


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def load_recipient_facts(
    conn: Connection,
    contact_ids: Iterable[int],
    *,
    now: datetime,
    cap_lookback: timedelta | None,
    holds: Collection[str] = (),
    return_window: timedelta = timedelta(days=30),
    ranked: Mapping[str, CampaignRules] | None = None,
    batch: Collection[int] = (),
) -> dict[int, RecipientFacts]:
    """Everything the gate needs for a batch of contacts, in a few queries per 900 contacts.

    Contacts missing from the result were deleted. ``cap_lookback`` is the longest
    frequency-cap window in the batch (None when no campaign in it has a cap); ``holds`` the
    open cases any campaign holds promotions for (:func:`batch_holds`), looked up only then;
    ``return_window`` is ``TIDINGS_RETURN_OPEN_DAYS``. ``ranked`` (every campaign's rules) asks
    for the contacts' waiting marketing messages of campaigns that outrank another (the rivals a
    capped send may yield to), leaving out the rows of this ``batch``: one more indexed query per
    chunk, and none when every campaign has the same priority.
    """
    ids = sorted({int(cid) for cid in contact_ids})
    facts: dict[int, RecipientFacts] = {}
    if not ids:
        return facts
    contact = Contact.__table__  # type: ignore[attr-defined]
    for chunk in _chunks(ids):
        rows = conn.execute(
            select(contact.c.id, contact.c.email, contact.c.timezone, contact.c.orders_count).where(
                contact.c.id.in_(chunk)
            )
        ).all()
        for cid, email, zone, orders in rows:
            facts[cid] = RecipientFacts(contact_id=cid, email=email, zone=_zone(zone), customer=bool(orders))
    if not facts:
        return facts
    known = sorted(facts)

    consent = Consent.__table__  # type: ignore[attr-defined]
    channels: dict[int, set[str]] = {}
    withdrawn: dict[int, set[str]] = {}
    for chunk in _chunks(known):
        for cid, channel, is_open in conn.execute(
            select(consent.c.contact_id, consent.c.channel, consent.c.withdrawn_at.is_(None))
            .where(consent.c.contact_id.in_(chunk))
            .distinct()
        ):
            (channels if is_open else withdrawn).setdefault(cid, set()).add(channel)
    for cid, found in channels.items():
        facts[cid].consented_channels = frozenset(found)
    for cid, found in withdrawn.items():
        facts[cid].withdrawn_channels = frozenset(found)

    suppression = Suppression.__table__  # type: ignore[attr-defined]
    by_key: dict[str, list[int]] = {}
    for cid, fact in facts.items():
        by_key.setdefault(fact.email.lower(), []).append(cid)
        by_key.setdefault(email_digest(fact.email), []).append(cid)
    found_suppressions: dict[int, list[tuple[str, str]]] = {}
    for chunk in _chunks(sorted(by_key)):
        for email, channel, reason in conn.execute(
            select(suppression.c.email, suppression.c.channel, suppression.c.reason).where(
                suppression.c.email.in_(chunk)
            )
        ):
            for cid in by_key.get(email, []):
                found_suppressions.setdefault(cid, []).append((channel, reason))
    for cid, found_rows in found_suppressions.items():
        facts[cid].suppressions = tuple(found_rows)

    if cap_lookback is not None:
        delivery = Delivery.__table__  # type: ignore[attr-defined]
        since = now - cap_lookback
        for chunk in _chunks(known):
            for cid, sent_at in conn.execute(
                select(delivery.c.contact_id, delivery.c.sent_at).where(
                    delivery.c.contact_id.in_(chunk), _marketing_sent(delivery, since)
                )
            ):
                facts[cid].marketing_sends.append(sent_at)

    if ranked:
        _load_rivals(conn, known, facts, ranked, now=now, batch=batch)
    _load_preferences(conn, known, facts)
    if holds:
        for cid, cases in open_cases(conn, known, now=now, kinds=holds, return_window=return_window).items():
            facts[cid].open_cases = cases
    return facts


def _load_rivals(
    conn: Connection,
    known: list[int],
    facts: dict[int, RecipientFacts],
    ranked: Mapping[str, CampaignRules],
    *,
    now: datetime,
    batch: Collection[int],
) -> None:
    """Waiting marketing rows (pending, retry, claimed elsewhere) of campaigns that outrank the
    lowest-ranked marketing campaign, due before their own cap window from now would end.

    A paused, draft or cancelled campaign's rows take no slot: they are not going out now, and
    ``plan``'s forecast (:mod:`engine.runtime.collisions`) leaves such campaigns out likewise."""
    marketing = [rule for rule in ranked.values() if rule.marketing]
    lowest = min((rule.priority for rule in marketing), default=0)
    outranking = {
        r.campaign_id: r
        for r in marketing
        if r.priority > lowest and r.frequency_cap is not None and not r.held and r.control == "active"
    }
    if not outranking:
        return
    horizon = now + max(rule.frequency_cap.per for rule in outranking.values() if rule.frequency_cap)
    delivery = Delivery.__table__  # type: ignore[attr-defined]
    waiting = (DeliveryState.pending.value, DeliveryState.retry.value, DeliveryState.claimed.value)
    skip_ids = set(batch)
    for chunk in _chunks(known):
        rows = conn.execute(
            select(
                delivery.c.id, delivery.c.contact_id, delivery.c.campaign_id, delivery.c.scheduled_for
            ).where(
                delivery.c.contact_id.in_(chunk),
                delivery.c.campaign_id.in_(sorted(outranking)),
                delivery.c.state.in_(waiting),
                delivery.c.category == MARKETING,
                delivery.c.scheduled_for < horizon,
            )
        )
        for row_id, cid, campaign_id, due in rows:
            if row_id in skip_ids:
                continue
            rule = outranking[campaign_id]
            facts[cid].rivals.append(Rival(campaign_id, rule.priority, due, rule.frequency_cap))


def _load_preferences(conn: Connection, known: list[int], facts: dict[int, RecipientFacts]) -> None:
    """Topics left and pauses, for contacts that have any (two indexed queries per chunk)."""
    topics = TopicOptOut.__table__  # type: ignore[attr-defined]
    snoozes = Snooze.__table__  # type: ignore[attr-defined]
    left: dict[int, set[str]] = {}
    for chunk in _chunks(known):
        for cid, topic in conn.execute(
            select(topics.c.contact_id, topics.c.topic).where(topics.c.contact_id.in_(chunk))
        ):
            left.setdefault(cid, set()).add(topic)
        for cid, until in conn.execute(
            select(snoozes.c.contact_id, snoozes.c.until).where(snoozes.c.contact_id.in_(chunk))
        ):
            facts[cid].snoozed_until = until
    for cid, names in left.items():
        facts[cid].left_topics = frozenset(names)


def batch_holds(rules: Iterable[CampaignRules]) -> frozenset[str]:
    """The open cases any of these campaigns holds promotions for (what the batch must look up)."""
    return frozenset(case for rule in rules if rule.marketing for case in rule.holds)


def _chunks(values: Sequence[object], size: int = 900) -> Iterable[list[object]]:
    # SQLite caps bound parameters per statement; 900 stays under every version's limit.
    for start in range(0, len(values), size):
        yield list(values[start : start + size])


# --- from the workspace ----------------------------------------------------------------------


def campaign_rules(
    campaign: Campaign, settings: Settings, control: str = "active", basis: str = "consent"
) -> CampaignRules:
    """The gate's view of a workspace campaign plus its operator control and legal basis."""
    zone = campaign.zone if campaign.timezone else settings.zone
    limits = campaign.limits
    cap = None
    if limits.frequency_cap is not None:
        cap = FrequencyCap(limits.frequency_cap.max, limits.frequency_cap.per.delta)
    quiet = None
    if limits.quiet_hours is not None:
        q = limits.quiet_hours
        quiet = QuietHours(q.start, q.end, q.action)
    window = (campaign.window.start, campaign.window.end) if campaign.window is not None else None
    holds: frozenset[str] = frozenset()
    if campaign.category.value != TRANSACTIONAL:
        chosen = limits.hold_marketing_while
        holds = frozenset(chosen if chosen is not None else settings.hold_marketing_while)
    return CampaignRules(
        campaign_id=campaign.key,
        category=campaign.category.value,
        status=campaign.status.value,
        control=control,
        zone=zone,
        window=window,
        frequency_cap=cap,
        quiet_hours=quiet,
        basis=basis,
        topic=campaign.topic,
        holds=holds,
        priority=campaign.priority,
    )
