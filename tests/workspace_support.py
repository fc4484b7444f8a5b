"""A small real workspace on disk for the workspace tests: templates, segments and a schedule."""

from __future__ import annotations

from pathlib import Path

from engine.cli.context import STATE

EMAIL_TEMPLATES = ("shipping-reminder", "holiday-greeting", "holiday-greeting-b")
POST_TEMPLATES = ("shipping-countdown",)

SEGMENTS = """\
segments:
  holiday-shoppers:
    where:
      - order: {placed_within: [2026-11-01, 2026-12-31]}
"""

SCHEDULE = """\
dates:
  christmas: 12-25
  january_return: 2027-01-04
ranges:
  returns_week: [2027-01-02, 2027-01-08]
shipping_cutoffs:
  deliver_before: 2026-12-24
  cutoffs:
    - {country: EE, method: standard, carrier: Omniva, order_by: "2026-12-18 12:00", timezone: Europe/Tallinn}
    - {country: EE, method: express, carrier: DPD, order_by: "2026-12-21 12:00", timezone: Europe/Tallinn}
    - {country: RO, method: express, carrier: Sameday, order_by: "2026-12-21 14:00",
       timezone: Europe/Bucharest}
  default: {method: standard}
"""

EMAIL = """\
---
subject: "Hello {{ contact.first_name }}"
---
<mjml>
  <mj-body>
    <mj-section>
      <mj-column>
        <mj-text>Hello {{ contact.first_name }}, order by Friday for delivery before Christmas.</mj-text>
        <mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""

SAMPLE = """\
contact: {id: 1, email: ada@example.com, first_name: Ada, locale: en, country: EE, timezone: Europe/Tallinn}
"""

VALID_CAMPAIGN = """\
name: Test
audience: {segment: holiday-shoppers}
trigger:
  at: 2026-12-14T10:00
steps:
  - send: {channel: email, template: shipping-reminder}
"""


def make_workspace(root: Path) -> Path:
    """Create campaigns/ (with segments.yaml), schedules/ and templates/ under ``root``."""
    (root / "campaigns").mkdir(parents=True, exist_ok=True)
    (root / "campaigns" / "segments.yaml").write_text(SEGMENTS)
    (root / "schedules").mkdir(exist_ok=True)
    (root / "schedules" / "season.yaml").write_text(SCHEDULE)
    for name in EMAIL_TEMPLATES:
        folder = root / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "email.mjml").write_text(EMAIL)
        (folder / "sample.yaml").write_text(SAMPLE)
    for name in POST_TEMPLATES:
        folder = root / "templates" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "post.txt").write_text("Order by Friday for Christmas delivery: {{ shop.url }}\n")
        (folder / "sample.yaml").write_text(SAMPLE)
    return root


def fresh_cli_state() -> None:
    """The CLI keeps settings for the life of the process; each test invocation needs its own."""
    STATE._settings = None
    STATE.workspace = None
