"""Shared helpers for the render tests: settings with a fixed key, and small template folders on disk."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.render import Record, build_context
from engine.settings import Settings, load_settings

SECRET = "render-tests-secret-key-0123456789abcdef"
NOW = datetime(2026, 12, 11, 7, 0, tzinfo=UTC)

LAYOUT = """\
<mjml>
  <mj-head><mj-title>{{ subject }}</mj-title><mj-preview>{{ preheader }}</mj-preview></mj-head>
  <mj-body>
    {% block content %}{% endblock %}
    <mj-include path="../_partials/footer.mjml" />
  </mj-body>
</mjml>
"""
FOOTER = """\
<mj-section><mj-column><mj-text>
  <a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}
</mj-text></mj-column></mj-section>
"""


def settings_for(workspace: Path, **overrides: Any) -> Settings:
    return load_settings(workspace=workspace, secret_key=SECRET, **overrides)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def templates_dir(root: Path) -> Path:
    """A templates/ folder with the shared layout and footer."""
    folder = root / "templates"
    write(folder / "_layouts" / "base.mjml", LAYOUT)
    write(folder / "_partials" / "footer.mjml", FOOTER)
    return folder


def email_file(
    folder: Path,
    name: str,
    body: str,
    *,
    subject: str = "Hello {{ contact.first_name }}",
    locale: str | None = None,
    preheader: str | None = None,
) -> Path:
    """An email template that extends the layout; ``body`` goes into the content block."""
    file_name = f"email.{locale}.mjml" if locale else "email.mjml"
    front = f'---\nsubject: "{subject}"\n' + (f'preheader: "{preheader}"\n' if preheader else "") + "---\n"
    text = (
        front
        + '{% extends "_layouts/base.mjml" %}\n{% block content %}\n'
        + textwrap.dedent(body)
        + "{% endblock %}\n"
    )
    return write(folder / name / file_name, text)


def section(inner: str) -> str:
    return f"<mj-section><mj-column><mj-text>{inner}</mj-text></mj-column></mj-section>\n"


def context(settings: Settings, **values: Any) -> dict[str, Any]:
    """A context for contact 7 (Maria, Bucharest) unless overridden."""
    contact = values.pop("contact", None) or Record(
        {
            "id": 7,
            "email": "maria@example.com",
            "first_name": "Maria",
            "last_name": "Pop",
            "name": "Maria Pop",
            "locale": "ro-RO",
            "country": "RO",
            "timezone": "Europe/Bucharest",
            "tags": [],
            "attributes": {},
            "orders_count": 1,
            "total_spent": 10,
            "first_seen_at": None,
            "last_order_at": None,
        }
    )
    return build_context(settings, contact=contact, now=values.pop("now", NOW), **values)
