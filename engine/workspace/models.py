"""The campaign language as typed models: campaigns, triggers, steps, limits, audience filters.

Every model forbids unknown keys (a misspelt key must never be silently ignored: a typo in
``quiet_hours`` would otherwise mail people at 3 am). Models check the *shape* of one file;
references across files (templates, segments, named dates) are checked by the loader.

Who reads what:

- the scheduler: ``campaign.trigger.kind`` / ``.spec``, ``campaign.zone``, ``campaign.window``,
  ``campaign.definition_hash()`` (reschedule only when it changes);
- the flow stepper: ``campaign.step_at(path)``, ``campaign.next_path(path)``,
  ``campaign.branch_path(if_path, taken)``, ``step.step_id`` (stable, goes into idempotency keys);
- the audience compiler: :class:`Audience` and the ``Filter`` tree (see the filter classes);
- other checkers: ``campaign.source.step(path)`` gives the file and line of a step.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.errors import SourceLocation
from engine.workspace.cron import CronError, check_cron
from engine.workspace.durations import Duration, Offset
from engine.workspace.expressions import ExpressionError, check_expression
from engine.workspace.filters import Filter
from engine.workspace.shares import HoldoutPercent, Percent
from engine.workspace.values import (
    DateValue,
    EventType,
    Locales,
    Name,
    StrictModel,
    TimeOfDay,
    ZoneName,
)

# ---------------------------------------------------------------------------------------------
# Small value types


def _check_expr(value: str) -> str:
    try:
        check_expression(value)
    except ExpressionError as exc:
        raise PydanticCustomError("expression", str(exc)) from None
    return value


Expr = Annotated[
    str,
    AfterValidator(_check_expr),
    WithJsonSchema({"type": "string", "description": "a Jinja2 expression over the template context"}),
]


def _check_cron_text(value: str) -> str:
    try:
        check_cron(value)
    except CronError as exc:
        raise PydanticCustomError("cron", str(exc)) from None
    return " ".join(value.split())


CronSpec = Annotated[
    str,
    AfterValidator(_check_cron_text),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*\S+(\s+\S+){4}\s*$",
            "description": "five crontab fields: minute hour day month weekday (MON–SUN)",
        }
    ),
]

_LOCAL_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?$")


def _local_datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise PydanticCustomError(
                "local_datetime",
                "give a local date and time without an offset; the zone is the campaign's timezone",
            )
        return value
    if isinstance(value, str) and _LOCAL_DATETIME.match(value.strip()):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            pass
    raise PydanticCustomError(
        "local_datetime",
        "expected a local date and time such as 2027-01-04T10:00, got {got}",
        {"got": repr(value)},
    )


LocalDateTime = Annotated[
    datetime,
    BeforeValidator(_local_datetime),
    WithJsonSchema({"type": "string", "pattern": _LOCAL_DATETIME.pattern, "description": "YYYY-MM-DDTHH:MM"}),
]

# ---------------------------------------------------------------------------------------------
# Triggers


class ScheduleTrigger(StrictModel):
    """Recurring: a crontab line. With ``local_time`` the time is each contact's own."""

    cron: CronSpec
    local_time: bool = False


class AtTrigger(StrictModel):
    """Once, at a local date and time (the campaign zone, or each contact's with ``local_time``)."""

    time: LocalDateTime
    local_time: bool = False


class CalendarTrigger(StrictModel):
    """Relative to a named date: global (``christmas``) or per contact (``shipping_cutoff``).

    Each offset moves the date by whole days; ``at`` is the time of day on the resulting date.
    """

    date: Name
    offsets: list[Offset] = Field(default_factory=lambda: [Offset(0, "d")], min_length=1)
    at: TimeOfDay = Field(default=time(9, 0), json_schema_extra={"default": "09:00"})
    local_time: bool = False

    @model_validator(mode="after")
    def _whole_days(self) -> CalendarTrigger:
        for offset in self.offsets:
            if offset.unit not in ("d", "w"):
                raise PydanticCustomError(
                    "offset_days",
                    "calendar offsets move a date by whole days: use d or w (e.g. -2d), not {got}",
                    {"got": str(offset)},
                )
        if len({o.whole_days for o in self.offsets}) != len(self.offsets):
            raise PydanticCustomError("offset_repeat", "the same offset is listed twice")
        return self


class EventTrigger(StrictModel):
    """Each matching shop event enrols its contact (once ever with ``once_per_contact``)."""

    type: EventType
    where: Expr | None = None
    once_per_contact: bool = False


def _at_tag(value: object) -> str:
    return "<spec>" if isinstance(value, dict | AtTrigger) else "<time>"


TriggerKind = Literal["schedule", "at", "calendar", "event"]
TRIGGER_KINDS: tuple[TriggerKind, ...] = ("schedule", "at", "calendar", "event")


class Trigger(StrictModel):
    """Exactly one of ``schedule``, ``at``, ``calendar``, ``event``."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1, "maxProperties": 1})

    schedule: ScheduleTrigger | None = None
    at: (
        Annotated[
            Union[Annotated[LocalDateTime, Tag("<time>")], Annotated[AtTrigger, Tag("<spec>")]],  # noqa: UP007
            Discriminator(_at_tag),
        ]
        | None
    ) = None
    calendar: CalendarTrigger | None = None
    event: EventTrigger | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Trigger:
        given = [kind for kind in TRIGGER_KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            found = f"found {' and '.join(given)}" if given else "found none"
            raise PydanticCustomError(
                "trigger_count",
                "a trigger is exactly one of schedule, at, calendar or event; {found}",
                {"found": found},
            )
        return self

    @property
    def kind(self) -> TriggerKind:
        return next(kind for kind in TRIGGER_KINDS if getattr(self, kind) is not None)

    @property
    def spec(self) -> ScheduleTrigger | AtTrigger | CalendarTrigger | EventTrigger:
        """The one trigger, with ``at: 2027-01-04T10:00`` normalised to an :class:`AtTrigger`."""
        value = getattr(self, self.kind)
        if isinstance(value, datetime):
            return AtTrigger(time=value)
        assert isinstance(value, ScheduleTrigger | AtTrigger | CalendarTrigger | EventTrigger)
        return value

    @property
    def local_time(self) -> bool:
        spec = self.spec
        return bool(getattr(spec, "local_time", False))


# ---------------------------------------------------------------------------------------------
# Steps


class Variant(StrictModel):
    """One arm of an A/B send; assignment is stable per contact and recorded."""

    template: Name
    weight: float = Field(gt=0, description="relative weight, a positive number")


TestMetric = Literal["clicks", "conversions", "revenue"]


class TestSpec(StrictModel):
    """An A/B test that picks its winner: ``share`` of the audience gets the variants first; after
    ``decide_after`` the variant that did best ``by`` the metric goes to the rest."""

    share: Percent
    decide_after: Duration
    by: TestMetric = "clicks"

    @model_validator(mode="after")
    def _some_time(self) -> TestSpec:
        if self.decide_after.delta.total_seconds() <= 0:
            raise PydanticCustomError(
                "decide_after",
                "decide_after must leave the test some time, e.g. 4h (got {got})",
                {"got": str(self.decide_after)},
            )
        return self


class SendSpec(StrictModel):
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["template"]}, {"required": ["variants"]}]}
    )

    channel: Literal["email"] = "email"
    template: Name | None = None
    variants: list[Variant] | None = Field(default=None, min_length=1)
    test: TestSpec | None = None

    @field_validator("test")
    @classmethod
    def _test_needs_variants(cls, value: TestSpec | None, info: ValidationInfo) -> TestSpec | None:
        variants = info.data.get("variants")
        if value is not None and (variants is None or len(variants) < 2):
            raise PydanticCustomError(
                "test_variants",
                "a test picks a winner among variants: list at least two under variants: "
                "[{template, weight}, …]",
            )
        return value

    to: Literal["contact", "recipient"] = Field(
        default="contact",
        description=(
            "who receives it: the enrolled contact, or (in campaigns triggered by gift_card.purchased) "
            "the gift card's recipient"
        ),
    )

    @model_validator(mode="after")
    def _one_source(self) -> SendSpec:
        if (self.template is None) == (self.variants is None):
            raise PydanticCustomError(
                "send_template",
                "a send needs either template: NAME or variants: [{template, weight}], not both",
            )
        if self.variants is not None:
            names = [v.template for v in self.variants]
            if len(set(names)) != len(names):
                raise PydanticCustomError("variant_repeat", "each variant needs a different template")
        return self

    @property
    def templates(self) -> list[str]:
        if self.variants is not None:
            return [v.template for v in self.variants]
        assert self.template is not None
        return [self.template]


class PostSpec(StrictModel):
    channel: Literal["x"] = "x"
    template: Name


class WaitUntil(StrictModel):
    """Wait a duration; with ``until_time`` then on to the next such time of day in the contact's zone."""

    duration: Duration
    until_time: TimeOfDay | None = None


class WaitUntilDate(StrictModel):
    """Wait until a date taken from the context (``event.data.send_on``), at ``until_time`` in the zone of
    the contact the next send goes to; a missing or past date does not wait at all."""

    until_date: Expr
    until_time: TimeOfDay = Field(default=time(9, 0), json_schema_extra={"default": "09:00"})


class WaitForEvent(StrictModel):
    """Wait until the contact's next event of a type, at most ``timeout``."""

    for_event: EventType
    timeout: Duration


class CouponSpec(StrictModel):
    """A unique code per contact, stored and put into the template context as ``coupon``."""

    id: Name
    percent: Annotated[Decimal, Field(gt=0, le=100, decimal_places=2)]
    expires_in: Duration
    prefix: Annotated[str, Field(pattern=r"^[A-Z0-9]{0,12}$")] = ""


class StepBase(StrictModel):
    """What every step has: an optional id, and the position path the loader gives it."""

    kind: ClassVar[str] = ""
    id: Name | None = None
    _path: str = PrivateAttr(default="")

    @property
    def path(self) -> str:
        """Position in the flow: ``"2"``, ``"2.then.0"``; stable while the steps above it stay put."""
        return self._path

    @property
    def step_id(self) -> str:
        """The id stats and idempotency keys use: the written ``id``, else ``s`` + the position path."""
        return self.id if self.id is not None else f"s{self._path}"

    def templates(self) -> list[str]:
        return []


class SendStep(StepBase):
    kind: ClassVar[str] = "send"
    send: SendSpec
    #: Send in this language (or, for a list, the contact's when listed, else the first), not the contact's.
    locale: Locales | None = None

    def templates(self) -> list[str]:
        return self.send.templates


class PostStep(StepBase):
    kind: ClassVar[str] = "post"
    post: PostSpec

    def templates(self) -> list[str]:
        return [self.post.template]


def _wait_tag(value: object) -> str:
    if isinstance(value, dict):
        if "for_event" in value:
            return "<for_event>"
        return "<until_date>" if "until_date" in value else "<until>"
    if isinstance(value, WaitForEvent):
        return "<for_event>"
    if isinstance(value, WaitUntilDate):
        return "<until_date>"
    if isinstance(value, WaitUntil):
        return "<until>"
    return "<duration>"


class WaitStep(StepBase):
    """``wait: 2d``, ``wait: {duration: 1d, until_time: "10:00"}``, ``wait: {for_event: T, timeout: 7d}``
    or ``wait: {until_date: EXPR, until_time: "09:00"}``.

    The until_time form waits the duration, then on to the next such time in the contact's zone.
    The until_date form waits until that date (from the context) at that time in the zone of the
    contact the next send goes to (the gift card's recipient for ``to: recipient``).
    """

    kind: ClassVar[str] = "wait"
    wait: Annotated[
        Union[  # noqa: UP007
            Annotated[Duration, Tag("<duration>")],
            Annotated[WaitUntil, Tag("<until>")],
            Annotated[WaitUntilDate, Tag("<until_date>")],
            Annotated[WaitForEvent, Tag("<for_event>")],
        ],
        Discriminator(_wait_tag),
    ]

    @property
    def spec(self) -> WaitUntil | WaitUntilDate | WaitForEvent:
        """The wait with the ``wait: 2d`` shorthand normalised to ``WaitUntil(duration=2d)``."""
        if isinstance(self.wait, Duration):
            return WaitUntil(duration=self.wait)
        return self.wait


class CouponStep(StepBase):
    kind: ClassVar[str] = "coupon"
    coupon: CouponSpec


def _exit_schema(schema: dict[str, Any]) -> None:
    obj = dict(schema)
    schema.clear()
    schema["anyOf"] = [{"const": "exit", "description": "leave the flow"}, obj]


def _bare_exit(value: object) -> object:
    return {"exit": True} if value == "exit" else value


class ExitStep(StepBase):
    """``- exit``: the contact leaves the flow (``{id: x, exit: true}`` names it)."""

    model_config = ConfigDict(json_schema_extra=_exit_schema)
    kind: ClassVar[str] = "exit"
    exit: Literal[True] = True

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: object) -> object:
        return _bare_exit(value)


class IfStep(StepBase):
    """``if: EXPR`` with ``then: [steps]`` and optional ``else: [steps]``."""

    kind: ClassVar[str] = "if"
    condition: Expr = Field(alias="if")
    then: list[Step] = Field(min_length=1)
    otherwise: list[Step] = Field(default_factory=list, alias="else")

    def branch(self, name: str) -> list[Step]:
        if name == "then":
            return self.then
        if name == "else":
            return self.otherwise
        raise StepPathError(f"an if step has branches 'then' and 'else', not {name!r}")


STEP_KINDS: tuple[str, ...] = ("send", "post", "wait", "if", "coupon", "exit")
_STEP_CLASSES: dict[str, type[StepBase]] = {
    "send": SendStep,
    "post": PostStep,
    "wait": WaitStep,
    "if": IfStep,
    "coupon": CouponStep,
    "exit": ExitStep,
}


def _step_tag(value: object) -> str | None:
    if isinstance(value, StepBase):
        return f"<{value.kind}>"
    if value == "exit":
        return "<exit>"
    if isinstance(value, dict):
        kinds = [k for k in STEP_KINDS if k in value]
        if len(kinds) == 1:
            return f"<{kinds[0]}>"
    return None


Step = Annotated[
    Union[  # noqa: UP007
        Annotated[SendStep, Tag("<send>")],
        Annotated[PostStep, Tag("<post>")],
        Annotated[WaitStep, Tag("<wait>")],
        Annotated[IfStep, Tag("<if>")],
        Annotated[CouponStep, Tag("<coupon>")],
        Annotated[ExitStep, Tag("<exit>")],
    ],
    Discriminator(
        _step_tag,
        custom_error_type="step_kind",
        custom_error_message="a step is exactly one of send, post, wait, if, coupon or exit",
    ),
]
AnyStep = SendStep | PostStep | WaitStep | IfStep | CouponStep | ExitStep


class StepPathError(LookupError):
    """A step path that does not exist in the campaign (e.g. the campaign was edited mid-flow)."""


# ---------------------------------------------------------------------------------------------
# Campaign


class Status(StrEnum):
    active = "active"
    paused = "paused"
    draft = "draft"


class Category(StrEnum):
    marketing = "marketing"
    transactional = "transactional"


class Window(StrictModel):
    """Both days included, in the campaign zone."""

    start: DateValue
    end: DateValue

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start > self.end:
            raise PydanticCustomError(
                "window_order",
                "window start {start} is after its end {end}",
                {"start": self.start.isoformat(), "end": self.end.isoformat()},
            )
        return self

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


class Audience(StrictModel):
    """Who a per-contact campaign reaches: a named segment ANDed with ``where`` conditions."""

    segment: Name | None = None
    where: list[Filter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> Audience:
        if self.segment is None and not self.where:
            raise PydanticCustomError(
                "audience_empty",
                "an audience needs a segment or where conditions (e.g. where: [{consent: email}])",
            )
        return self


class Goal(StrictModel):
    """The contact leaves the flow when this event happens (a conversion)."""

    event: EventType


class FrequencyCap(StrictModel):
    """At most ``max`` marketing messages per contact per ``per``, across marketing campaigns."""

    max: int = Field(gt=0)
    per: Duration


class QuietHours(StrictModel):
    """A window in the contact's local time when nothing is sent; it may wrap midnight (21:00–08:00)."""

    start: TimeOfDay
    end: TimeOfDay
    action: Literal["delay", "skip"] = "delay"

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


#: What can keep promotions away from a contact (``limits.hold_marketing_while``): an open return
#: (or exchange) and an open claim. The runtime decides when one is open (engine.runtime.cases).
HoldReason = Literal["return_open", "claim_open"]
HOLD_REASONS: tuple[HoldReason, ...] = ("return_open", "claim_open")


def _unique_holds(value: list[HoldReason] | None) -> list[HoldReason] | None:
    if value is not None and len(set(value)) != len(value):
        raise PydanticCustomError("hold_repeat", "each hold is listed once")
    return value


class Limits(StrictModel):
    frequency_cap: FrequencyCap | None = None
    quiet_hours: QuietHours | None = None
    skip_public_holidays: bool = False
    hold_marketing_while: Annotated[list[HoldReason] | None, AfterValidator(_unique_holds)] = Field(
        default=None,
        description=(
            "promotions skip a contact while one of these is open (return_open, claim_open); "
            "absent: TIDINGS_HOLD_MARKETING_WHILE; [] holds nothing"
        ),
    )


class CampaignSource:
    """Where a campaign came from: the file, and the line and column of every key in it."""

    def __init__(self, path: Path, locate: Any) -> None:
        self.path = path
        self._locate = locate  # yaml_source.SourceMap.location

    def at(self, *loc: str | int) -> SourceLocation:
        """Where a key path such as ``("trigger", "calendar", "date")`` is; its nearest parent if absent."""
        located: SourceLocation = self._locate(tuple(loc))
        return located

    def step(self, path: str) -> SourceLocation:
        """The line of the step at a flow path (``"2.then.0"``)."""
        loc: list[str | int] = ["steps"]
        for part in path.split("."):
            loc.append(int(part) if part.isdigit() else part)
        return self.at(*loc)


class Campaign(StrictModel):
    """One campaign file. ``id`` defaults to the file name; ``timezone`` to ``TIDINGS_TIMEZONE``."""

    model_config = ConfigDict(title="Tidings campaign")

    id: Name | None = None
    name: Annotated[str, Field(min_length=1)]
    status: Status = Status.draft
    category: Category = Category.marketing
    timezone: ZoneName | None = None
    window: Window | None = None
    audience: Audience | None = None
    trigger: Trigger
    goal: Goal | None = None
    topic: Name | None = Field(
        default=None,
        description="what the campaign is about (e.g. offers): a contact may leave a topic, keep the rest",
    )
    steps: list[Step] = Field(min_length=1)
    limits: Limits = Field(default_factory=Limits)
    priority: int = Field(
        default=0,
        description=(
            "who wins a capped slot: a promotion skips a contact (frequency_cap:yielded_to) when its"
            " send would leave no room under the frequency cap for a waiting message of a campaign"
            " with a higher priority; equal priorities: first come, first served"
        ),
    )
    holdout: HoldoutPercent | None = None
    #: Send every email in this language (a list: the contact's when listed, else the first); a step may
    #: set its own.
    locale: Locales | None = None

    _source: CampaignSource | None = PrivateAttr(default=None)

    @field_validator("holdout")
    @classmethod
    def _holdout_needs_contacts(
        cls, value: HoldoutPercent | None, info: ValidationInfo
    ) -> HoldoutPercent | None:
        trigger = info.data.get("trigger")
        broadcast = info.data.get("audience") is None and (trigger is None or trigger.event is None)
        if value is not None and broadcast:
            raise PydanticCustomError(
                "holdout_broadcast",
                "a holdout keeps contacts unsent: it needs an audience (a broadcast post reaches everyone)",
            )
        return value

    @model_validator(mode="after")
    def _number_steps(self) -> Campaign:
        _assign_paths(self.steps, "")
        return self

    # -- identity -------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """The campaign id (always set once loaded)."""
        assert self.id is not None, "campaign loaded without an id"
        return self.id

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.timezone or "UTC")
        except (ZoneInfoNotFoundError, ValueError):  # pragma: no cover — validated on load
            return ZoneInfo("UTC")

    @property
    def is_broadcast(self) -> bool:
        """No audience and no event (whose contact would be the audience): the steps are posts that
        run once per trigger occurrence."""
        return self.audience is None and self.trigger.event is None

    @property
    def source(self) -> CampaignSource:
        if self._source is None:
            return CampaignSource(
                Path(f"{self.id or 'campaign'}.yaml"), lambda loc: SourceLocation(self.id or "")
            )
        return self._source

    def attach_source(self, source: CampaignSource) -> None:
        self._source = source

    def definition_hash(self) -> str:
        """A stable hash of the normalised definition: same meaning, same hash (key order, quoting,
        comments and flow/block style do not matter); the scheduler reschedules when it changes."""
        data = _without_unset(self.model_dump(mode="json", by_alias=True), "locale")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    # -- walking the flow -------------------------------------------------------------------------

    def iter_steps(self) -> Iterator[AnyStep]:
        """Every step, depth first in reading order (an if step before its branches)."""
        yield from _walk(self.steps)

    def forced_locales(self, step: SendStep) -> list[str] | None:
        """The languages ``step`` must be sent in (its own ``locale``, else the campaign's), or None."""
        return step.locale if step.locale is not None else self.locale

    def templates_used(self) -> list[str]:
        seen: dict[str, None] = {}
        for step in self.iter_steps():
            for name in step.templates():
                seen.setdefault(name, None)
        return list(seen)

    def post_steps(self) -> list[PostStep]:
        """A broadcast's post steps, in reading order."""
        return [step for step in self.iter_steps() if isinstance(step, PostStep)]

    def next_send(self, path: str) -> SendStep | None:
        """The first send step after the step at ``path`` in reading order (what a wait there waits for)."""
        passed = False
        for step in self.iter_steps():
            if passed and isinstance(step, SendStep):
                return step
            passed = passed or step.path == path
        return None

    def step_by_id(self, step_id: str) -> AnyStep | None:
        return next((s for s in self.iter_steps() if s.step_id == step_id), None)

    def first_path(self) -> str:
        return "0"

    def step_at(self, path: str) -> AnyStep:
        """The step at a path; :class:`StepPathError` when the flow has no such step."""
        steps, index = self._list_and_index(path)
        if index >= len(steps):
            raise StepPathError(f"campaign {self.id} has no step at {path!r}")
        step: AnyStep = steps[index]
        return step

    def next_path(self, path: str) -> str | None:
        """The step after ``path`` once it is done: its next sibling, else the step after the enclosing
        if step, and so on outwards; ``None`` at the end of the flow. (For an if step itself, use
        :meth:`branch_path` to enter a branch.)"""
        steps, index = self._list_and_index(path)
        if index + 1 < len(steps):
            return _join(_parent_prefix(path), index + 1)
        parts = path.split(".")
        if len(parts) == 1:
            return None
        return self.next_path(".".join(parts[:-2]))

    def branch_path(self, if_path: str, taken: bool) -> str | None:
        """Where an if step goes: the first step of ``then`` (``taken``) or ``else``; past the if step
        when that branch is empty."""
        step = self.step_at(if_path)
        if not isinstance(step, IfStep):
            raise StepPathError(f"step {if_path!r} of campaign {self.id} is not an if step")
        branch = "then" if taken else "else"
        if step.branch(branch):
            return f"{if_path}.{branch}.0"
        return self.next_path(if_path)

    def _list_and_index(self, path: str) -> tuple[list[Step], int]:
        parts = path.split(".")
        if len(parts) % 2 != 1 or not all(p.isdigit() for p in parts[::2]):
            raise StepPathError(f"not a step path: {path!r} (expected e.g. '2' or '2.then.0')")
        steps: list[Step] = self.steps
        for index_text, branch in zip(parts[:-1:2], parts[1::2], strict=True):
            index = int(index_text)
            holder = steps[index] if index < len(steps) else None
            if not isinstance(holder, IfStep):
                raise StepPathError(f"campaign {self.id} has no if step at {path!r}")
            steps = holder.branch(branch)
        return steps, int(parts[-1])


def _without_unset(data: Any, key: str) -> Any:
    """``data`` without ``key: null`` anywhere: a key added later leaves the hash of a campaign that does
    not use it as it was (no reschedule of every campaign on upgrade)."""
    if isinstance(data, dict):
        return {k: _without_unset(v, key) for k, v in data.items() if not (k == key and v is None)}
    if isinstance(data, list):
        return [_without_unset(item, key) for item in data]
    return data


def _join(prefix: str, index: int) -> str:
    return f"{prefix}.{index}" if prefix else str(index)


def _parent_prefix(path: str) -> str:
    return path.rpartition(".")[0]


def _assign_paths(steps: list[Step], prefix: str) -> None:
    for index, step in enumerate(steps):
        path = _join(prefix, index)
        step._path = path
        if isinstance(step, IfStep):
            _assign_paths(step.then, f"{path}.then")
            _assign_paths(step.otherwise, f"{path}.else")


def _walk(steps: list[Step]) -> Iterator[AnyStep]:
    for step in steps:
        yield step
        if isinstance(step, IfStep):
            yield from _walk(step.then)
            yield from _walk(step.otherwise)


IfStep.model_rebuild()
Campaign.model_rebuild()

STEP_CLASSES = _STEP_CLASSES
