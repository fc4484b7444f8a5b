"""Rendered emails: headers, unsubscribe link, text part, link tagging, compliance refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from render_support import SECRET, context, email_file, section, settings_for, templates_dir, write

from engine.render import Renderer, RenderError
from engine.tokens import UnsubscribeTokens


@pytest.fixture
def renderer(tmp_path: Path) -> Renderer:
    folder = templates_dir(tmp_path)
    email_file(
        folder,
        "offer",
        section('Hi {{ contact.first_name }}, see <a href="https://shop.example.com/sale?x=1">the sale</a>')
        + '<mj-section><mj-column><mj-button href="{{ shop.url }}/gifts">Gifts</mj-button>'
        + "</mj-column></mj-section>\n",
        preheader="Only this week, {{ contact.first_name }}",
    )
    return Renderer(settings_for(tmp_path), folder)


def test_marketing_email_has_one_click_unsubscribe_headers(renderer: Renderer) -> None:
    message = renderer.render_email(
        "offer", context(renderer.settings), campaign_id="winter", step_id="s1", delivery_id=41
    )
    assert message.headers["X-Tidings-Campaign"] == "winter"
    assert message.headers["X-Tidings-Delivery"] == "41"
    assert message.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.fullmatch(r"<(https?://[^>]+)>", message.headers["List-Unsubscribe"]).group(1)  # type: ignore[union-attr]
    assert url.startswith("http://127.0.0.1:8026/u/")
    token = url.rsplit("/", 1)[1]
    claim = UnsubscribeTokens(SECRET).verify(token)
    assert (claim.contact_id, claim.channel, claim.campaign_id) == (7, "email", "winter")
    assert f'href="{url}"' in message.html  # the visible link in the footer, untagged


def test_a_mailbox_the_shop_processes_is_offered_after_the_one_click_url(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "offer", section("Hi {{ contact.first_name }}"))
    settings = settings_for(
        tmp_path, public_url="https://shop.example.com/t", unsubscribe_mailto="optout@shop.example.com"
    )
    message = Renderer(settings, folder).render_email("offer", context(settings), campaign_id="winter")

    url, mailto = re.fullmatch(r"<([^>]+)>, <([^>]+)>", message.headers["List-Unsubscribe"]).groups()  # type: ignore[union-attr]
    assert url.startswith("https://shop.example.com/t/u/")
    assert mailto == f"mailto:optout@shop.example.com?subject=unsubscribe-{url.rsplit('/', 1)[1]}"


def test_no_mailto_is_offered_for_a_mailbox_nobody_reads(renderer: Renderer) -> None:
    message = renderer.render_email("offer", context(renderer.settings), campaign_id="winter")

    assert "mailto:" not in message.headers["List-Unsubscribe"]


def test_transactional_email_has_no_list_unsubscribe_headers(renderer: Renderer) -> None:
    message = renderer.render_email(
        "offer", context(renderer.settings), campaign_id="c", delivery_id=1, marketing=False
    )
    assert "List-Unsubscribe" not in message.headers
    assert message.headers["X-Tidings-Campaign"] == "c"


def test_subject_preheader_and_recipient_come_from_template_and_contact(renderer: Renderer) -> None:
    message = renderer.render_email("offer", context(renderer.settings))
    assert (message.subject, message.preheader) == ("Hello Maria", "Only this week, Maria")
    assert (message.to_email, message.to_name) == ("maria@example.com", "Maria Pop")
    assert (message.from_email, message.from_name) == ("hello@shop.example.com", "Nordlys & Brad")
    assert "Only this week, Maria" in message.html  # the hidden preview text
    assert "<title>Hello Maria</title>" in message.html


def test_links_get_utm_parameters_static_and_jinja_alike(renderer: Renderer) -> None:
    message = renderer.render_email("offer", context(renderer.settings), campaign_id="winter", step_id="s1")
    utm = "utm_source=tidings&amp;utm_medium=email&amp;utm_campaign=winter&amp;utm_content=s1"
    assert f'href="https://shop.example.com/sale?x=1&amp;{utm}"' in message.html
    assert f'href="https://shop.example.com/gifts?{utm}"' in message.html
    assert (
        "https://shop.example.com/gifts?utm_source=tidings&utm_medium=email&utm_campaign=winter"
        in message.text
    )


def test_text_part_is_generated_from_the_html(renderer: Renderer) -> None:
    text = renderer.render_email("offer", context(renderer.settings)).text
    assert text.startswith("Hi Maria, see the sale (https://shop.example.com/sale?x=1&utm_source=tidings")
    assert "Gifts (https://shop.example.com/gifts?" in text
    assert "<" not in text.replace("<https", "")
    assert "Only this week" not in text  # the hidden preheader stays out of the text part


def test_email_txt_overrides_the_generated_text_part(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "plain", section("Hi {{ contact.first_name }}"))
    write(
        folder / "plain" / "email.txt",
        "Hand-written for {{ contact.first_name }} & co.\n{{ unsubscribe_url }}\n",
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    message = renderer.render_email("plain", context(renderer.settings))
    assert message.text.startswith("Hand-written for Maria & co.\nhttp://127.0.0.1:8026/u/")


def test_marketing_email_without_unsubscribe_link_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write(
        folder / "bare" / "email.mjml",
        "---\nsubject: Hi\n---\n<mjml><mj-body>"
        + section("{{ shop.postal_address }}")
        + "</mj-body></mjml>\n",
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    with pytest.raises(RenderError, match="does not show the unsubscribe link"):
        renderer.render_email("bare", context(renderer.settings))
    assert renderer.render_email("bare", context(renderer.settings), marketing=False).subject == "Hi"


def test_marketing_email_without_postal_address_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write(
        folder / "bare" / "email.mjml",
        "---\nsubject: Hi\n---\n<mjml><mj-body>"
        + section('<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
        + "</mj-body></mjml>\n",
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    with pytest.raises(RenderError, match="postal address"):
        renderer.render_email("bare", context(renderer.settings))


def test_front_matter_from_overrides_the_sender(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    path = email_file(folder, "from", section("x"))
    path.write_text(
        path.read_text().replace("---\n", '---\nfrom: "Kadri at Nordlys <kadri@shop.example.com>"\n', 1)
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    message = renderer.render_email("from", context(renderer.settings))
    assert (message.from_name, message.from_email) == ("Kadri at Nordlys", "kadri@shop.example.com")


def test_misspelt_front_matter_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    path = email_file(folder, "typo", section("x"))
    path.write_text(path.read_text().replace("---\n", "---\npreheder: x\n", 1))
    renderer = Renderer(settings_for(tmp_path), folder)
    with pytest.raises(
        RenderError,
        match=r"typo/email.mjml:2: front matter: unknown key 'preheder' \(did you mean 'preheader'\?\)",
    ):
        renderer.compile_email("typo")
