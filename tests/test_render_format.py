"""Filters and days_until: formatted in the template file's locale, in the contact's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from render_support import NOW, context, section, settings_for, templates_dir, write

from engine.render import Record, Renderer, RenderError

BODY = (
    "---\nsubject: s\n---\n<mjml><mj-body>"
    + section(
        "D={{ cutoff.deliver_before|date('long') }} T={{ cutoff.order_by|datetime('d MMMM HH:mm') }} "
        "M={{ order.total|money(order.currency) }} N={{ contact.total_spent|number }} "
        "L={{ days_until(cutoff.order_by) }}"
    )
    + '<mj-section><mj-column><mj-text><a href="{{ unsubscribe_url }}">u</a> {{ shop.postal_address }}'
    "</mj-text></mj-column></mj-section></mj-body></mjml>\n"
)


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    folder = templates_dir(tmp_path)
    for suffix in ("", ".ro", ".et"):
        write(folder / "dates" / f"email{suffix}.mjml", BODY)
    return Renderer(settings_for(tmp_path), folder)


def _render(renderer: Renderer, locale: str, currency: str = "EUR", zone: str = "Europe/Bucharest") -> str:
    contact = Record(
        {
            "id": 7,
            "email": "m@example.com",
            "timezone": zone,
            "total_spent": Decimal("1234.5"),
            "first_name": None,
            "name": None,
            "locale": locale,
        }
    )
    ctx = context(
        renderer.settings,
        contact=contact,
        cutoff=Record(
            {
                "order_by": datetime(2026, 12, 18, 22, 30, tzinfo=UTC),
                "deliver_before": date(2026, 12, 19),
                "method": "standard",
                "carrier": "Omniva",
            }
        ),
        order=Record({"total": Decimal("1234.50"), "currency": currency}),
    )
    return renderer.render_email("dates", ctx, locale=locale).text


def test_romanian_file_formats_dates_and_money_in_romanian_with_prices_in_lei(renderer: Renderer) -> None:
    text = _render(renderer, "ro", "RON").replace("\u00a0", " ")
    assert "D=19 decembrie 2026" in text
    assert "M=1.234,50 lei" in text and "RON" not in text
    assert "N=1.234,5" in text


def test_lei_are_romanian_only_other_languages_keep_the_currency_code(renderer: Renderer) -> None:
    assert "M=1\u00a0234,50\u00a0RON" in _render(renderer, "et", "RON")
    assert "M=1.234,50 EUR" in _render(renderer, "ro", "EUR").replace("\u00a0", " ")


def test_estonian_file_formats_dates_and_money_in_estonian(renderer: Renderer) -> None:
    text = _render(renderer, "et", "EUR")
    assert "D=19. detsember 2026" in text
    assert "M=1\u00a0234,50\u00a0€" in text  # Estonian groups thousands with a no-break space


def test_english_default_file_formats_dollars(renderer: Renderer) -> None:
    assert "M=$1,234.50" in _render(renderer, "en", "USD").replace("\u00a0", " ")


def test_date_times_show_in_the_contacts_own_zone(renderer: Renderer) -> None:
    # 22:30 UTC on the 18th is 00:30 on the 19th in Bucharest, 17:30 on the 18th in New York.
    assert "T=19 decembrie 00:30" in _render(renderer, "ro", zone="Europe/Bucharest")
    assert "T=18 decembrie 17:30" in _render(renderer, "ro", zone="America/New_York")


def test_days_until_counts_whole_days_in_the_contacts_zone(renderer: Renderer) -> None:
    # NOW is 2026-12-11 07:00 UTC; the cutoff is the 19th in Bucharest, the 18th in New York.
    assert "L=8" in _render(renderer, "ro", zone="Europe/Bucharest")
    assert "L=7" in _render(renderer, "ro", zone="America/New_York")


def test_contact_locale_ro_RO_falls_back_to_the_ro_file(renderer: Renderer) -> None:
    ctx = context(
        renderer.settings,
        cutoff=Record({"order_by": NOW, "deliver_before": date(2026, 12, 19)}),
        order=Record({"total": 1, "currency": "RON"}),
    )
    message = renderer.render_email("dates", ctx)  # contact.locale is ro-RO
    assert message.locale == "ro"
    assert "decembrie" in message.text


def test_unknown_locale_falls_back_to_the_default_file(renderer: Renderer) -> None:
    ctx = context(
        renderer.settings,
        cutoff=Record({"order_by": NOW, "deliver_before": date(2026, 12, 19)}),
        order=Record({"total": 1, "currency": "USD"}),
    )
    message = renderer.render_email("dates", ctx, locale="fi-FI")
    assert message.locale == "en"
    assert "December" in message.text


def test_money_without_a_currency_is_a_render_error_naming_the_file(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    write(folder / "bad" / "email.mjml", BODY.replace("money(order.currency)", "money"))
    renderer = Renderer(settings_for(tmp_path), folder)
    ctx = context(
        renderer.settings,
        cutoff=Record({"order_by": NOW, "deliver_before": date(2026, 12, 19)}),
        order=Record({"total": 1, "currency": "USD"}),
    )
    with pytest.raises(RenderError, match=r"bad/email.mjml:\d+: .*money needs a currency"):
        renderer.render_email("bad", ctx)
