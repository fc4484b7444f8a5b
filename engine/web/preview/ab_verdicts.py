"""The A/B tests a template takes part in, with their verdicts, for the preview's template page.

A template is in a test when a send step lists it among ``variants`` and declares ``test:``. The
page shows, for each such step, what the test does (``A/B test: 20% first, the winner by clicks
after 4h``) and — when the preview has a database — its latest verdict from ``ab_test``
(:mod:`engine.runtime.ab_tests`): still testing, the winner with its confidence, or a tie that sent
the control to the rest, and each variant's figures. The JSON twin carries the same list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from engine.runtime.ab_tests import describe_test, latest_tests
from engine.workspace.loader import Workspace
from engine.workspace.models import SendStep


def template_tests(workspace: Workspace, engine: Engine | None, template: str) -> list[dict[str, Any]]:
    """Every tested send step that sends ``template``, with its latest verdict (None before any)."""
    found: list[dict[str, Any]] = []
    for campaign in workspace.campaigns.values():
        for step in campaign.iter_steps():
            if not isinstance(step, SendStep) or step.send.test is None:
                continue
            if template not in step.send.templates:
                continue
            found.append(
                {
                    "campaign": campaign.key,
                    "step": step.step_id,
                    "test": describe_test(step),
                    "variants": step.send.templates,
                    "control": step.send.templates[0],
                    "verdict": None,
                }
            )
    if not found or engine is None:
        return found
    with engine.connect() as conn:
        latest = latest_tests(conn)
    for item in found:
        record = latest.get((item["campaign"], item["step"]))
        if record is None:
            continue
        item["verdict"] = {
            **record.verdict.as_dict(),
            "text": record.verdict.text(),
            "occurrence": record.occurrence,
            "decide_at": record.decide_at.isoformat(),
            "arms": record.figures.get("arms", []),
            "this_template_won": record.status != "testing"
            and _template_of(record.figures, record.winner) == template,
        }
    return found


def _template_of(figures: dict[str, Any], label: str | None) -> str | None:
    return next((arm.get("template") for arm in figures.get("arms", []) if arm.get("label") == label), label)


__all__ = ["template_tests"]
