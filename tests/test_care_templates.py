"""The shipped emails as customers read them: how to reach the shop, which footer, words not codes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from render_support import settings_for

from engine.message import EmailMessage
from engine.render import Record, Renderer, load_sample, sample_context
from engine.render.checks import is_marketing, written_as_marketing
from engine.render.environment import formatters
from engine.workspace.loader import load_workspace

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
LOCALES = ("en", "ro", "et")
WORKSPACE = load_workspace(REPO).workspace
EMAILS = sorted(name for name, info in WORKSPACE.templates.templates.items() if info.has_email)
SERVICE = (
    "gift-card-welcome",
    "gift-card-delivery",
    "gift-card-waiting",
    "goodwill-apology",
)
STATUS = ("return-received", "exchange-requested", "exchange-shipped", "claim-opened", "claim-resolved")
LEADS_WITH_SUPPORT = ("apology-coupon", "goodwill-apology", "exchange-help", *STATUS[1:])
SUPPORT_HEADING = {"en": "Need a hand?", "ro": "Ai nevoie de ajutor?", "et": "Vajad abi?"}


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(settings_for(tmp_path_factory.mktemp("ws")), TEMPLATES)


def _render(renderer: Renderer, name: str, locale: str, **changes: Any) -> EmailMessage:
    sample = load_sample(TEMPLATES / name / "sample.yaml", renderer.settings) | changes
    marketing = is_marketing(renderer, name, [str(c.category.value) for c in WORKSPACE.campaigns_using(name)])
    return renderer.render_email(
        name, sample_context(sample, renderer.settings), locale=locale, marketing=marketing
    )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", EMAILS)
def test_every_shipped_email_says_how_to_reach_the_shop_in_its_language(
    renderer: Renderer, name: str, locale: str
) -> None:
    message = _render(renderer, name, locale)
    support = renderer.settings.shop.as_context()["support"]
    hours = formatters(locale, "UTC").hours(support["hours"])
    for part in (message.html, message.text):
        assert SUPPORT_HEADING[locale] in part
        assert support["email"] in part and support["phone"] in part and hours in part
        assert (
            support["chat_url"] in part and renderer.settings.shop.as_context()["returns_policy_url"] in part
        )
    assert f'href="mailto:{support["email"]}"' in message.html
    assert 'href="tel:+3726001234"' in message.html


def test_support_hours_read_naturally_in_each_language() -> None:
    hours = "Mon-Fri 09:00-17:00, Sat 10:00-14:00 Europe/Tallinn"
    assert formatters("en", "UTC").hours(hours) == (  # CLDR's narrow and thin spaces, as Babel formats them
        "Monday–Friday, 9:00\u202fAM\u2009–\u20095:00\u202fPM; "
        "Saturday, 10:00\u202fAM\u2009–\u20092:00\u202fPM (Eastern European Time)"
    )
    assert formatters("ro", "UTC").hours(hours) == (
        "luni–vineri, 09:00–17:00; sâmbătă, 10:00–14:00 (Ora Europei de Est)"
    )
    assert formatters("et", "UTC").hours(hours) == (
        "esmaspäev–reede, 09:00–17:00; laupäev, 10:00–14:00 (Ida-Euroopa aeg)"
    )


def test_shipped_campaigns_send_service_messages_as_transactional_and_the_rest_as_marketing(
    renderer: Renderer,
) -> None:
    for campaign in WORKSPACE.campaigns.values():
        for template in campaign.templates_used():
            if WORKSPACE.templates.get(template) and WORKSPACE.templates.templates[template].has_email:
                assert written_as_marketing(renderer, template) == (campaign.category.value == "marketing"), (
                    campaign.key,
                    template,
                )


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", SERVICE + STATUS)
def test_service_messages_have_no_unsubscribe_link_and_say_why_they_come(
    renderer: Renderer, name: str, locale: str
) -> None:
    message = _render(renderer, name, locale)
    assert "/u/" not in message.html and "List-Unsubscribe" not in message.headers
    assert "keep you posted" not in message.text and "te ținem la curent" not in message.text
    assert "meie uudiseid" not in message.text
    why = {"en": "You are receiving this message because", "ro": "Primești acest mesaj pentru că"}
    assert why.get(locale, "Saad selle kirja, sest") in message.text
    assert renderer.settings.shop.postal_address in message.text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", LEADS_WITH_SUPPORT)
def test_apology_and_exchange_mails_lead_with_how_to_reach_us(
    renderer: Renderer, name: str, locale: str
) -> None:
    text = _render(renderer, name, locale).text
    greeting = re.search(r"^(Dear|Hello|Dragă|Bună ziua|Hea|Tere)\b", text, re.MULTILINE)
    assert greeting is not None
    assert text.index(SUPPORT_HEADING[locale]) < greeting.start()
    assert text.count(SUPPORT_HEADING[locale]) == 1


@pytest.mark.parametrize(
    ("locale", "problem", "said"),
    [
        ("ro", "damaged", "a ajuns deteriorată"),
        ("et", "damaged", "see saabus kahjustatuna"),
        ("ro", "lost", "curierul a pierdut-o pe drum"),
        ("et", "late", "see jõudis kohale hiljem, kui lubasime"),
        ("en", "lost", "the carrier lost it on the way"),
    ],
)
def test_the_apology_says_what_went_wrong_in_words_not_the_shops_code(
    renderer: Renderer, locale: str, problem: str, said: str
) -> None:
    sample = load_sample(TEMPLATES / "apology-coupon" / "sample.yaml", renderer.settings)
    order = Record({**sample["order"], "problem": problem})
    message = _render(renderer, "apology-coupon", locale, order=order)
    assert said in message.text and said in message.html
    assert f"({problem})" not in message.text and f": {problem}." not in message.text


def test_estonian_texts_never_put_a_case_governing_word_before_a_formatted_date() -> None:
    """ "hiljemalt"/"kuni" need the adessive/terminative; Babel gives the nominative ("18. detsember")."""
    governed = re.compile(r"\b(hiljemalt|kuni|alates|enne)\s*(<strong>)?\s*\{\{[^}]*\|(date|datetime)\b")
    for path in sorted(TEMPLATES.glob("*/*.et.*")) + sorted(TEMPLATES.glob("_partials/*.et.*")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            assert not governed.search(line), f"{path}:{number}: {line.strip()[:80]}"


def test_romanian_mail_shows_prices_in_lei(renderer: Renderer) -> None:
    message = _render(renderer, "gift-card-balance", "ro")
    assert "112,50 lei" in message.subject.replace("\u00a0", " ")
    assert "250,00 lei" in message.text.replace("\u00a0", " ") and "RON" not in message.text


def test_plural_phrases_follow_each_languages_rules(renderer: Renderer) -> None:
    ro, et, en = (formatters(locale, "UTC") for locale in ("ro", "et", "en"))
    forms = {"one": "o zi", "few": "# zile", "other": "# de zile"}
    assert [ro.plural(n, **forms) for n in (1, 2, 19, 20, 101, 120)] == [
        "o zi",
        "2 zile",
        "19 zile",
        "20 de zile",
        "101 zile",
        "120 de zile",
    ]
    assert [et.plural(n, one="# päev", other="# päeva") for n in (1, 7)] == ["1 päev", "7 päeva"]
    assert en.plural(1, one="# day", other="# days") == "1 day"


def test_the_text_part_keeps_paragraph_breaks(renderer: Renderer) -> None:
    text = _render(renderer, "shipping-reminder", "et").text
    assert "Hea Kadri!\n\nEt pakk jõuaks sinuni enne jõule" in text
    assert "\n\n\n" not in text


def test_the_buyers_note_is_escaped_and_keeps_its_line_breaks(renderer: Renderer) -> None:
    sample = load_sample(TEMPLATES / "gift-card-delivery" / "sample.yaml", renderer.settings)
    note = 'Merry Christmas!\r\n<script>alert("x")</script> <a href="https://evil.example">win</a>\nLove'
    event = Record({**sample["event"], "data": {**sample["event"]["data"], "message": note}})
    message = _render(renderer, "gift-card-delivery", "en", event=event)
    assert "<script>" not in message.html and 'href="https://evil.example"' not in message.html
    assert "Merry Christmas!<br />\n&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in message.html
    assert '<script>alert("x")</script> <a href="https://evil.example">win</a>\nLove' in message.text


def test_the_delivery_email_reads_well_without_the_optional_details(renderer: Renderer) -> None:
    sample = load_sample(TEMPLATES / "gift-card-delivery" / "sample.yaml", renderer.settings)
    bare = {
        k: v for k, v in sample["event"]["data"].items() if k not in ("sender_name", "message", "redeem_url")
    }
    event = Record({**sample["event"], "data": bare})
    for locale, subject in (
        ("en", "You have received a"),
        ("ro", "Ai primit un card"),
        ("et", "Sulle saabus"),
    ):
        message = _render(renderer, "gift-card-delivery", locale, event=event)
        assert message.subject.startswith(subject)
        assert "4821" in message.text  # the card's last digits, to find the number
        assert "/gift-cards/redeem" in message.html


def test_status_messages_are_sent_by_transactional_campaigns_on_their_events() -> None:
    expected = {
        "return-received": "return.requested",
        "exchange-requested": "exchange.requested",
        "exchange-shipped": "exchange.shipped",
        "claim-opened": "claim.opened",
        "claim-resolved": "claim.resolved",
    }
    for template, event_type in expected.items():
        [campaign] = WORKSPACE.campaigns_using(template)
        assert campaign.category.value == "transactional" and campaign.status.value == "active"
        assert campaign.trigger.event is not None and campaign.trigger.event.type == event_type


def test_the_preview_shows_a_service_message_no_campaign_sends_yet_as_a_service_message(
    tmp_path: Path,
) -> None:
    from starlette.testclient import TestClient

    from engine.clock import SystemClock
    from engine.settings import load_settings
    from engine.web.preview import create_preview_app

    settings = load_settings(
        workspace=REPO, secret_key="p" * 40, database_url=f"sqlite:///{tmp_path / 'p.db'}"
    )
    with TestClient(
        create_preview_app(settings, clock=SystemClock()), base_url="http://127.0.0.1:8025"
    ) as client:
        listed = {t["name"]: t for t in client.get("/api/templates").json()["templates"]}
        apology = client.get("/api/templates/goodwill-apology", params={"locale": "ro"}).json()
    # The agents' apology is sent by customer care's built-in campaign, not by a workspace file.
    assert listed["goodwill-apology"]["campaigns"] == [] and listed["goodwill-apology"]["marketing"] is False
    assert listed["win-back"]["marketing"] is True
    assert apology["subject"] == (
        "Despre comanda NB-10977: 15% reducere la următoarea comandă, cu scuzele noastre"
    )
    assert "List-Unsubscribe" not in apology["headers"]
