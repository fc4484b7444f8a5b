"""Named outcomes for what never became a message: a flow that ended on an expression error, an
event whose trigger ``where`` could not be evaluated.

No silent outcomes: each is a row with a reason, not only a log line — the flow's enrolment ends
``exited`` with ``end_reason`` ``expression_error: …``, and an event a trigger's ``where`` failed on
is recorded as an enrolment that ended at once with the same reason. The reason names the
expression and where it is written (``campaigns/apology.yaml:12``), so ``simulate``, ``stats``,
``plan`` and the preview can count and show them; :func:`exit_counts` reads them back.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Connection

from engine.store.models import Enrolment, EnrolmentState
from engine.workspace.models import Campaign

ENROLMENT: Table = Enrolment.__table__  # type: ignore[attr-defined]
EXPRESSION_ERROR = "expression_error"
#: Reasons an enrolment ends normally (not an outcome anyone must look at).
ORDINARY = frozenset({"completed", "exit", "holdout"})
MAX_REASON = 480


def expression_reason(
    campaign: Campaign, step_path: str | None, expression: str, error: BaseException
) -> str:
    """``expression_error: <error> in "<expression>" (campaigns/x.yaml:12)`` — one line, bounded."""
    location = (
        campaign.source.step(step_path) if step_path else campaign.source.at("trigger", "event", "where")
    )
    path = Path(location.path)
    shown = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    text = " ".join(str(error).split()) or type(error).__name__
    # the expression once: an error that already quotes it ("until_date 'x' is 'soon'") is not repeated
    where = "" if expression in text else f' in "{expression}"'
    reason = f"{EXPRESSION_ERROR}: {text}{where} ({shown}:{location.line})"
    return reason[:MAX_REASON]


def reason_kind(reason: str | None) -> str:
    """The name an end reason is counted under (``expression_error``, ``no_recipient``, ``goal:…``)."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0] if reason.startswith(EXPRESSION_ERROR) else reason


def exit_counts(
    conn: Connection, campaign_id: str | None = None, *, since: datetime | None = None
) -> dict[str, Counter[str]]:
    """Enrolments that ended ``exited`` for a reason worth a look (since ``since``), by campaign and kind."""
    query = select(ENROLMENT.c.campaign_id, ENROLMENT.c.end_reason, func.count()).where(
        ENROLMENT.c.state == EnrolmentState.exited.value
    )
    if campaign_id is not None:
        query = query.where(ENROLMENT.c.campaign_id == campaign_id)
    if since is not None:
        query = query.where(ENROLMENT.c.ended_at >= since)
    found: dict[str, Counter[str]] = {}
    for cid, reason, count in conn.execute(query.group_by(ENROLMENT.c.campaign_id, ENROLMENT.c.end_reason)):
        kind = reason_kind(reason)
        if kind in ORDINARY:
            continue
        found.setdefault(cid, Counter())[kind] += int(count)
    return found


def example_reasons(conn: Connection, campaign_id: str, limit: int = 3) -> list[str]:
    """A few distinct full reasons of a campaign's exits (what to fix, with its file and line)."""
    rows = conn.execute(
        select(ENROLMENT.c.end_reason)
        .where(
            ENROLMENT.c.campaign_id == campaign_id,
            ENROLMENT.c.state == EnrolmentState.exited.value,
            ENROLMENT.c.end_reason.like(f"{EXPRESSION_ERROR}%"),
        )
        .distinct()
        .limit(limit)
    )
    return [str(reason) for (reason,) in rows]


__all__ = ["EXPRESSION_ERROR", "example_reasons", "exit_counts", "expression_reason", "reason_kind"]
