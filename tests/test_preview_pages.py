"""The preview app over HTTP: every page and its JSON twin, against a temp copy of the shipped workspace."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from engine.channels.outbox import OutboxEmailChannel, OutboxSocialChannel
from engine.clock import FakeClock
from engine.message import EmailMessage, SocialPost
from engine.settings import Settings, load_settings
from engine.store.models import Contact
from engine.web.preview import create_preview_app

REPO = Path(__file__).resolve().parent.parent
SECRET_KEY = "k" * 40
SENDGRID_KEY = "SG.preview-test-key-that-must-never-show"
SMTP_PASSWORD = "smtp-password-that-must-never-show"

CARD_EN = """---
subject: "Hello {{ contact.first_name }}, your card"
preheader: "A gift from {{ shop.name }}"
---
<mjml><mj-body><mj-section><mj-column>
<mj-image src="https://shop.example.com/card.png" alt="A gift card" />
<mj-text>Hi {{ contact.first_name }}, welcome to the shop.</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""
CARD_RO = CARD_EN.replace("Hello", "Bună").replace("welcome to the shop", "bine ai venit")
CARD_SAMPLE = (
    "contact: {id: 7, email: ana@example.com, first_name: Ana, locale: en, timezone: Europe/Tallinn}\n"
)
BROKEN = """---
subject: "Broken"
---
<mjml><mj-body><mj-section><mj-column>
<mj-text>{{ contact.first_name }</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def make_workspace(root: Path) -> Path:
    """A copy of the shipped workspace plus two small templates the tests control."""
    for folder in ("campaigns", "templates", "schedules"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, root / folder)
    card = root / "templates" / "preview-card"
    card.mkdir(parents=True)
    (card / "email.mjml").write_text(CARD_EN, encoding="utf-8")
    (card / "email.ro.mjml").write_text(CARD_RO, encoding="utf-8")
    (card / "sample.yaml").write_text(CARD_SAMPLE, encoding="utf-8")
    post = root / "templates" / "preview-post"
    post.mkdir()
    (post / "post.txt").write_text("{{ days }} days left to order for Christmas! https://shop.example.com\n")
    (post / "sample.yaml").write_text("")
    return root


def settings_for(workspace: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": workspace,
        "database_url": f"sqlite:///{workspace / 'var' / 'tidings.db'}",
        "secret_key": SECRET_KEY,
        "sendgrid_api_key": SENDGRID_KEY,
        "smtp_url": f"smtp://shop:{SMTP_PASSWORD}@127.0.0.1:2525",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "shop")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))


@pytest.fixture
def client(workspace: Path, sqlite_engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    app = create_preview_app(settings_for(workspace), engine=sqlite_engine, clock=clock, watch=False)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


# -- index --------------------------------------------------------------------------------------


def test_index_lists_every_campaign_with_status_trigger_and_next_fire(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert 'id="campaign-holiday-greetings"' in page.text

    campaigns = {c["id"]: c for c in client.get("/api/campaigns").json()["campaigns"]}
    greeting = campaigns["holiday-greetings"]
    assert greeting["status"] == "active"
    assert greeting["trigger"].startswith("at 2026-12-14 10:00")
    assert greeting["fires"][0]["when"] == "2026-12-14 10:00 each contact's local time"
    assert campaigns["gift-card-welcome"]["next_fires_note"] == "on each gift_card.redeemed event"


def test_index_shows_a_campaign_problem_with_its_file_and_line(client: TestClient, workspace: Path) -> None:
    broken = workspace / "campaigns" / "typo.yaml"
    broken.write_text("name: Typo\nstatuss: active\ntrigger: {at: 2026-12-20T10:00}\nsteps:\n  - exit\n")

    campaigns = {c["id"]: c for c in client.get("/api/campaigns").json()["campaigns"]}

    assert campaigns["typo"]["status"] == "invalid"
    assert any(p["where"] == "campaigns/typo.yaml:2" for p in campaigns["typo"]["problems"])
    assert "campaigns/typo.yaml:2" in client.get("/").text


def test_index_lists_templates_with_their_locales(client: TestClient) -> None:
    templates = {t["name"]: t for t in client.get("/api/templates").json()["templates"]}

    assert templates["preview-card"]["locales"] == ["en", "ro"]
    assert templates["preview-card"]["kind"] == "email"
    assert templates["preview-post"]["kind"] == "post"
    assert "_layouts" not in templates and "_partials" not in templates


# -- one template -------------------------------------------------------------------------------


def test_template_page_shows_subject_preheader_and_a_sandboxed_frame_of_the_html(client: TestClient) -> None:
    page = client.get("/templates/preview-card", params={"width": "mobile", "theme": "dark"})

    assert page.status_code == 200
    assert '<div class="subject" id="subject">Hello Ana, your card</div>' in page.text
    assert "A gift from Nordlys &amp; Brad" in page.text
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    assert 'class="email w-mobile dark"' in page.text
    assert 'src="/render/preview-card?locale=en&amp;theme=dark"' in page.text


def test_the_frame_source_is_the_rendered_email_itself(client: TestClient) -> None:
    api = client.get("/api/templates/preview-card").json()
    frame = client.get("/render/preview-card")

    assert frame.status_code == 200
    assert frame.headers["content-type"].startswith("text/html")
    assert frame.text == api["html"]
    assert "sandbox" in frame.headers["content-security-policy"]
    assert "Hi Ana, welcome to the shop." in frame.text


def test_dark_mode_frame_declares_a_dark_colour_scheme(client: TestClient) -> None:
    frame = client.get("/render/preview-card", params={"theme": "dark"})

    assert "<style>:root{color-scheme:dark}" in frame.text
    assert '<meta name="color-scheme" content="dark">' in frame.text


def test_locale_picker_renders_the_locale_file(client: TestClient) -> None:
    api = client.get("/api/templates/preview-card", params={"locale": "ro"}).json()

    assert api["locale"] == "ro"
    assert api["subject"] == "Bună Ana, your card"
    assert "templates/preview-card/email.ro.mjml" in api["files"]


def test_json_carries_text_part_headers_size_and_checks(client: TestClient) -> None:
    api = client.get("/api/templates/preview-card").json()

    assert "Hi Ana, welcome to the shop." in api["text"]
    assert dict(api["headers"])["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert api["size"] == len(api["html"].encode())
    assert api["error"] is None and isinstance(api["checks"], list)


def test_a_broken_template_shows_its_error_with_file_and_line(client: TestClient, workspace: Path) -> None:
    (workspace / "templates" / "preview-card" / "email.mjml").write_text(BROKEN)

    page = client.get("/templates/preview-card")
    frame = client.get("/render/preview-card")
    api = client.get("/api/templates/preview-card").json()

    assert page.status_code == 200 and 'id="render-error"' in page.text
    assert api["error"].startswith("templates/preview-card/email.mjml:5:")
    assert frame.status_code == 422
    assert "templates/preview-card/email.mjml:5:" in frame.text


def test_a_template_over_the_render_budget_shows_its_error_instead_of_hanging(
    client: TestClient, workspace: Path
) -> None:
    hostile = CARD_EN.replace(
        "<mj-text>Hi {{ contact.first_name }}, welcome to the shop.</mj-text>",
        "<mj-text>{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}</mj-text>"
        "<mj-text>{{ 'x' * 10**9 }}</mj-text>",
    )
    (workspace / "templates" / "preview-card" / "email.mjml").write_text(hostile)

    api = client.get("/api/templates/preview-card").json()
    frame = client.get("/render/preview-card")

    assert api["error"].startswith("templates/preview-card/email.mjml:7:")
    assert "loop iterations" in api["error"]
    assert frame.status_code == 422


def test_post_template_shows_text_and_weighted_count(client: TestClient, workspace: Path) -> None:
    (workspace / "templates" / "preview-post" / "sample.yaml").write_text("")
    page = client.get("/templates/preview-post")
    api = client.get("/api/templates/preview-post").json()

    assert api["kind"] == "post"
    assert api["error"] is not None  # `days` is undefined in the sample: shown, not raised
    (workspace / "templates" / "preview-post" / "post.txt").write_text(
        "Order by Dec 19 🎄 https://shop.example.com"
    )
    client.app.state.preview.files_changed([workspace / "templates" / "preview-post" / "post.txt"])  # type: ignore[attr-defined]
    api = client.get("/api/templates/preview-post").json()
    assert api["text"] == "Order by Dec 19 🎄 https://shop.example.com"
    assert api["weighted_length"] == len("Order by Dec 19 ") + 2 + 1 + 23
    assert api["valid"] is True
    assert page.status_code == 200


def test_an_over_long_post_is_flagged_against_280(client: TestClient, workspace: Path) -> None:
    (workspace / "templates" / "preview-post" / "post.txt").write_text("ü" * 300)

    api = client.get("/api/templates/preview-post").json()
    page = client.get("/templates/preview-post")

    assert api["weighted_length"] == 300 and api["valid"] is False
    assert any("over X's 280" in c["message"] for c in api["checks"])
    assert "300 / 280 weighted characters" in page.text


def test_contact_picker_renders_for_a_contact_from_the_database(
    client: TestClient, sqlite_engine: Engine
) -> None:
    with Session(sqlite_engine) as session:
        contact = Contact.model_validate(
            {
                "email": "Mihai@Example.RO",
                "first_name": "Mihai",
                "locale": "ro-RO",
                "timezone": "Europe/Bucharest",
            }
        )
        session.add(contact)
        session.commit()
        contact_id = contact.id

    by_email = client.get("/api/templates/preview-card", params={"contact": "mihai@example.ro"}).json()
    by_id = client.get("/api/templates/preview-card", params={"contact": str(contact_id)}).json()
    unknown = client.get("/api/templates/preview-card", params={"contact": "nobody@example.com"}).json()

    assert by_email["subject"] == "Bună Mihai, your card" and by_email["locale"] == "ro"
    assert by_email["to_email"] == "mihai@example.ro"
    assert by_id["subject"] == by_email["subject"]
    assert "from the database" in by_email["sample_note"]
    assert "no contact 'nobody@example.com'" in unknown["error"]
    assert "mihai@example.ro" in client.get("/templates/preview-card").text  # offered in the picker


# -- outbox -------------------------------------------------------------------------------------


def _fill_outbox(outbox: Path) -> None:
    now = datetime(2026, 12, 14, 9, 0, tzinfo=UTC)
    OutboxEmailChannel(outbox / "email", now=lambda: now).send(
        EmailMessage(
            to_email="ana@example.com",
            subject="Order by <Dec 19>",
            html="<html><body><p>Order now</p><script>alert(1)</script></body></html>",
            text="Order now\n",
            from_email="hello@shop.example.com",
            headers={"X-Tidings-Delivery": "41", "X-Tidings-Campaign": "shipping-deadlines"},
        )
    )
    OutboxSocialChannel(outbox / "social", now=lambda: now).post(SocialPost(text="5 days left", campaign="c"))


def test_outbox_page_lists_messages_and_opens_one_like_a_mail_client(
    client: TestClient, workspace: Path
) -> None:
    _fill_outbox(workspace / "var" / "outbox")

    listing = client.get("/outbox")
    message = client.get("/outbox/email/41.eml")
    html = client.get("/outbox/email/41.eml/html")
    api = client.get("/api/outbox").json()

    assert "Order by &lt;Dec 19&gt;" in listing.text and "5 days left" in listing.text
    assert api["total"] == {"email": 1, "social": 1}
    assert message.status_code == 200
    assert "ana@example.com" in message.text and 'sandbox="allow-popups' in message.text
    assert "X-Tidings-Campaign" in message.text and "Order now" in message.text
    assert html.text.startswith("<html>") and "sandbox" in html.headers["content-security-policy"]
    (post_name,) = [e["name"] for e in api["entries"] if e["kind"] == "social"]
    post = client.get(f"/outbox/social/{post_name}")
    assert post.status_code == 200 and "5 days left" in post.text and "11 / 280" in post.text


def test_outbox_page_searches_and_shows_times_in_the_shop_zone(client: TestClient, workspace: Path) -> None:
    _fill_outbox(workspace / "var" / "outbox")

    found = client.get("/outbox", params={"address": "ana@", "from": "2026-12-14"})
    none = client.get("/outbox", params={"campaign": "holiday"})
    api = client.get("/api/outbox", params={"subject": "order by"}).json()
    bad = client.get("/outbox", params={"to": "yesterday"})

    assert "Order by &lt;Dec 19&gt;" in found.text and "5 days left" not in found.text
    assert "1 match" in found.text and 'value="ana@"' in found.text
    assert "Mon 14 Dec 2026 09:00" in found.text and "UTC, the shop&#39;s time zone" in found.text
    assert "No message matches this search." in none.text
    assert api["matched"] == 1 and api["query"]["subject"] == "order by"
    assert bad.status_code == 400 and "to: expected a date like 2026-12-14" in bad.text
    assert client.get("/api/outbox", params={"from": "x"}).status_code == 400


# -- timeline -----------------------------------------------------------------------------------


def test_timeline_asks_for_a_simulation_until_there_is_a_report(client: TestClient, workspace: Path) -> None:
    before = client.get("/timeline")
    (workspace / "var").mkdir(exist_ok=True)
    report = {"days": [{"date": "2026-12-14", "counts": {"holiday-greetings": 1200}}]}
    (workspace / "var" / "simulation.json").write_text(json.dumps(report))
    after = client.get("/timeline")
    api = client.get("/api/timeline").json()

    assert "run <code>tidings simulate" in before.text and "<svg" not in before.text
    assert "<svg" in after.text and "Mon 14 Dec 2026 · holiday-greetings: 1,200" in after.text
    assert "made by an older version" in after.text
    assert api["season"]["peak"] == 1200
    assert any(c["id"] == "holiday-greetings" and c["next_fires"] for c in api["campaigns"])


def test_timeline_says_which_simulation_it_shows_and_that_it_is_partial(
    workspace: Path, sqlite_engine: Engine, clock: FakeClock
) -> None:
    (workspace / "var").mkdir(exist_ok=True)
    report = {
        "from": "2026-12-10",
        "to": "2026-12-16",
        "generated_at": "2026-11-20T08:00:00+00:00",
        "timezone": "Europe/Tallinn",
        "days": [{"date": "2026-12-14", "counts": {"holiday-greetings": 1200}}],
    }
    (workspace / "var" / "simulation.json").write_text(json.dumps(report))
    settings = settings_for(workspace, timezone="Europe/Tallinn")
    app = create_preview_app(settings, engine=sqlite_engine, clock=clock, watch=False)
    with TestClient(app, base_url="http://127.0.0.1:8025") as tallinn:
        page = tallinn.get("/timeline").text
        api = tallinn.get("/api/timeline").json()

    assert "Thu 10 Dec 2026 – Wed 16 Dec 2026</strong> (7 days)" in page
    assert "run Fri 20 Nov 2026 10:00" in page  # 08:00 UTC in Tallinn
    assert "Europe/Tallinn, the shop&#39;s time zone" in page
    assert "Part of the season only." in page and "january-win-back (Wed 20 Jan 2027)" in page
    assert "tidings simulate --from 2026-12-01 --to 2027-01-20" in page
    assert api["simulation"]["from"] == "2026-12-10" and api["coverage"]["whole"] is False
    assert "holiday-greetings" not in api["coverage"]["outside"]


# -- security -----------------------------------------------------------------------------------


TRAVERSALS = [
    "/templates/..%2F..%2Fetc%2Fpasswd",
    "/templates/%2e%2e",
    "/templates/_layouts",
    "/render/..%252Fcampaigns",
    "/api/templates/%2Fetc%2Fpasswd",
    "/render/preview-card%00",
    "/outbox/email/..%2F..%2Fcampaigns%2Fholiday-greetings.yaml",
    "/outbox/email/%2e%2e%2fsecret_key",
    "/outbox/email/%2e%2e",
    "/outbox/email/..%2Fsecret_key/html",
    "/api/outbox/email/..%2F..%2Fsecret_key",
    "/outbox/..%2Fvar/secret_key",
    "/static/..%2Fpreview%2Fapp.py",
]


def test_path_traversal_in_template_and_outbox_names_is_refused(client: TestClient, workspace: Path) -> None:
    (workspace / "var").mkdir(exist_ok=True)
    (workspace / "var" / "secret_key").write_text(SECRET_KEY)

    for url in TRAVERSALS:
        response = client.get(url)
        assert response.status_code in (400, 404), url
        assert SECRET_KEY not in response.text and "trigger" not in response.text, url


def test_no_page_shows_a_configured_secret(client: TestClient, workspace: Path) -> None:
    _fill_outbox(workspace / "var" / "outbox")
    urls = ["/", "/timeline", "/outbox", "/api/campaigns", "/api/templates", "/api/outbox", "/api/timeline"]
    for template in client.get("/api/templates").json()["templates"]:
        urls += [f"/templates/{template['name']}", f"/api/templates/{template['name']}"]
    urls += ["/outbox/email/41.eml", "/api/outbox/email/41.eml"]

    for url in urls:
        body = client.get(url).text
        for secret in (SENDGRID_KEY, SMTP_PASSWORD, SECRET_KEY):
            assert secret not in body, f"{url} shows a secret"


def test_a_foreign_host_header_is_refused(client: TestClient) -> None:
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400


def test_pages_forbid_foreign_scripts_and_framing(client: TestClient) -> None:
    headers = client.get("/").headers

    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"


def test_page_values_are_escaped(client: TestClient, workspace: Path) -> None:
    sample = workspace / "templates" / "preview-card" / "sample.yaml"
    sample.write_text('contact: {id: 7, email: a@example.com, first_name: "<script>alert(1)</script>"}\n')

    page = client.get("/templates/preview-card")

    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
