"""Send test from the preview: through the configured channel, marked [TEST], rate-limited, same-origin."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers.smtp_server import SmtpServer
from starlette.testclient import TestClient

from engine.clock import FakeClock
from engine.settings import load_settings
from engine.web.preview import create_preview_app
from engine.web.preview.sendtest import PER_MINUTE

CARD = """---
subject: "Hello {{ contact.first_name }}"
---
<mjml><mj-body><mj-section><mj-column>
<mj-text>Hi {{ contact.first_name }}.</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def client(tmp_path: Path, smtp: SmtpServer, clock: FakeClock) -> Iterator[TestClient]:
    card = tmp_path / "templates" / "card"
    card.mkdir(parents=True)
    (card / "email.mjml").write_text(CARD)
    (card / "sample.yaml").write_text("contact: {id: 3, email: ana@example.com, first_name: Ana}\n")
    settings = load_settings(
        workspace=tmp_path,
        secret_key="s" * 40,
        email_channel="smtp",
        smtp_url=smtp.url(),
        smtp_require_tls=False,  # a local relay without credentials
        public_url="https://shop.example.com",
    )
    app = create_preview_app(settings, clock=clock, watch=False)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


def test_send_test_delivers_the_rendered_message_marked_test_to_the_given_address(
    client: TestClient, smtp: SmtpServer
) -> None:
    response = client.post("/api/templates/card/send-test", json={"to": "me@example.org"})

    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True and "smtp" in response.json()["message"]
    (received,) = smtp.received
    assert received.rcpt_tos == ("me@example.org",)
    assert received.message["Subject"] == "[TEST] Hello Ana"
    assert "Hi Ana." in received.message.get_body(("html",)).get_content()


def test_send_test_form_shows_the_result_on_the_template_page(client: TestClient, smtp: SmtpServer) -> None:
    response = client.post(
        "/templates/card/send-test",
        data={"to": "me@example.org", "theme": "dark"},
        headers={"origin": "http://127.0.0.1:8025"},
    )

    assert response.status_code == 200
    assert 'id="notice"' in response.text and "Sent [TEST] Hello Ana to me@example.org" in response.text
    assert len(smtp.received) == 1


def test_send_test_is_limited_per_minute(client: TestClient, smtp: SmtpServer, clock: FakeClock) -> None:
    for _ in range(PER_MINUTE):
        assert client.post("/api/templates/card/send-test", json={"to": "me@example.org"}).status_code == 200

    refused = client.post("/api/templates/card/send-test", json={"to": "me@example.org"})
    clock.advance(60 / PER_MINUTE)
    again = client.post("/api/templates/card/send-test", json={"to": "me@example.org"})

    assert refused.status_code == 429 and "try again in 12 s" in refused.json()["message"]
    assert again.status_code == 200
    assert len(smtp.received) == PER_MINUTE + 1


def test_send_test_from_another_site_is_refused(client: TestClient, smtp: SmtpServer) -> None:
    form = client.post(
        "/templates/card/send-test", data={"to": "me@example.org"}, headers={"origin": "https://evil.example"}
    )
    api = client.post(
        "/api/templates/card/send-test", json={"to": "me@example.org"}, headers={"origin": "null"}
    )

    assert form.status_code == 403 and api.status_code == 403
    assert smtp.received == []


@pytest.mark.parametrize(
    "address",
    ["", "not-an-address", "me@example.org\r\nBcc: all@example.org", "a@example.org, b@example.org"],
)
def test_send_test_refuses_anything_but_one_plain_address(
    client: TestClient, smtp: SmtpServer, address: str
) -> None:
    response = client.post("/api/templates/card/send-test", json={"to": address})

    assert response.status_code == 400
    assert smtp.received == []


def test_send_test_reports_a_refusal_by_the_mail_server(client: TestClient, smtp: SmtpServer) -> None:
    smtp.refuse("gone@example.org", "550 5.1.1 No such user")

    response = client.post("/api/templates/card/send-test", json={"to": "gone@example.org"})

    assert response.status_code == 502
    assert "smtp channel refused" in response.json()["message"] and "550" in response.json()["message"]
