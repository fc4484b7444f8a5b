"""A tiny real workspace for runtime tests: campaign models and templates on disk (no tests here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

GREETING = """---
subject: "Happy holidays, {{ contact.first_name or 'friend' }}"
---
<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>Hello {{ contact.first_name }}!
        {% if coupon %}Your code: {{ coupon.code }}{% endif %}</mj-text>
      <mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""

RECEIPT = """---
subject: "Your gift card"
---
<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>How to redeem your card, {{ contact.first_name }}.</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""

BROKEN = """---
subject: "Broken"
---
<mjml>
  <mj-body>
    <mj-section><mj-column>
      <mj-text>{{ contact.first_name | no_such_filter }}</mj-text>
    </mj-column></mj-section>
  </mj-body>
</mjml>
"""

COUNTDOWN = (
    "Only {{ days_until(trigger_date) if trigger_date else 'a few' }} days left to order for Christmas!\n"
)


def write_templates(root: Path) -> Path:
    templates = root / "templates"
    for name, body, file in [
        ("greeting", GREETING, "email.mjml"),
        ("receipt", RECEIPT, "email.mjml"),
        ("broken", BROKEN, "email.mjml"),
        ("countdown", COUNTDOWN, "post.txt"),
    ]:
        folder = templates / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / file).write_text(body, encoding="utf-8")
    return templates


def campaign(campaign_id: str = "holiday", **overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": campaign_id,
        "name": campaign_id.title(),
        "status": "active",
        "audience": {"where": [{"consent": "email"}]},
        "trigger": {"at": "2026-12-01T10:00"},
        "steps": [{"id": "main", "send": {"template": "greeting"}}],
    }
    data.update(overrides)
    return Campaign.model_validate(data)


def broadcast(campaign_id: str = "countdown", **overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": campaign_id,
        "name": "Countdown",
        "status": "active",
        "trigger": {"at": "2026-12-01T10:00"},
        "steps": [{"id": "post", "post": {"template": "countdown"}}],
    }
    data.update(overrides)
    return Campaign.model_validate(data)


def workspace(*campaigns: Campaign, root: Path = Path(".")) -> Workspace:
    """A real workspace of these campaigns; its templates are under ``root/templates``."""
    return Workspace(root=root, campaigns={c.key: c for c in campaigns})
