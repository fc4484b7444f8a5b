"""The outbox page's reader: files written by the real file channels, read back as a mail client would."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from engine.channels.outbox import OutboxEmailChannel, OutboxSocialChannel
from engine.message import EmailMessage, SocialPost
from engine.web.preview.names import is_plain_name, outbox_file
from engine.web.preview.outbox import InvalidQuery, OutboxQuery, list_outbox, read_email, read_post


def _email(subject: str, delivery: str) -> EmailMessage:
    return EmailMessage(
        to_email="ana@example.ro",
        to_name="Ana",
        subject=subject,
        html=f"<html><body><h1>{subject}</h1></body></html>",
        text=f"{subject}\n",
        from_email="hello@shop.example.com",
        from_name="Nordlys & Brad",
        headers={"X-Tidings-Delivery": delivery, "X-Tidings-Campaign": "holiday-greetings"},
    )


def _now() -> datetime:
    return datetime(2026, 12, 14, 9, 0, tzinfo=UTC)


def test_outbox_lists_emails_and_posts_newest_first(tmp_path: Path) -> None:
    emails = OutboxEmailChannel(tmp_path / "email", now=_now)
    posts = OutboxSocialChannel(tmp_path / "social", now=_now)
    emails.send(_email("First", "1"))
    posts.post(SocialPost(text="5 days left to order for Christmas", campaign="shipping-countdown"))
    emails.send(_email("Last", "2"))
    for age, name in ((300, "email/1.eml"), (200, "social"), (100, "email/2.eml")):
        target = tmp_path / name
        files = list(target.glob("*.json")) if target.is_dir() else [target]
        for file in files:
            os.utime(file, (1_800_000_000 - age, 1_800_000_000 - age))

    listing = list_outbox(tmp_path)

    assert [e.title for e in listing.entries] == ["Last", "5 days left to order for Christmas", "First"]
    assert listing.total == {"email": 2, "social": 1}
    assert listing.entries[0].recipient == "Ana <ana@example.ro>"
    assert listing.entries[0].campaign == "holiday-greetings"
    assert listing.entries[1].campaign == "shipping-countdown"


def test_outbox_listing_parses_only_the_newest_files(tmp_path: Path) -> None:
    channel = OutboxEmailChannel(tmp_path / "email", now=_now)
    for number in range(5):
        channel.send(_email(f"Message {number}", str(number)))
        os.utime(tmp_path / "email" / f"{number}.eml", (1_800_000_000 + number, 1_800_000_000 + number))

    listing = list_outbox(tmp_path, limit=2)

    assert [e.title for e in listing.entries] == ["Message 4", "Message 3"]
    assert listing.total["email"] == 5


def test_outbox_email_splits_into_headers_html_and_text(tmp_path: Path) -> None:
    OutboxEmailChannel(tmp_path / "email", now=_now).send(_email("Order by Dec 19", "77"))

    message = read_email(tmp_path / "email" / "77.eml")

    assert message.subject == "Order by Dec 19"
    assert message.sender == "Nordlys & Brad <hello@shop.example.com>"
    assert message.html is not None and "<h1>Order by Dec 19</h1>" in message.html
    assert message.text is not None and message.text.strip() == "Order by Dec 19"
    assert ("X-Tidings-Campaign", "holiday-greetings") in message.headers
    assert message.date.startswith("Mon, 14 Dec 2026")


def test_outbox_post_reads_the_json_the_social_outbox_wrote(tmp_path: Path) -> None:
    result = OutboxSocialChannel(tmp_path / "social", now=_now).post(SocialPost(text="Hi", campaign="c"))

    post = read_post(Path(str(result.detail)))

    assert post["text"] == "Hi" and post["campaign"] == "c" and post["channel"] == "x"


def test_half_written_temporary_files_are_not_listed(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / ".77.eml.abc.tmp").write_text("From: x\n")
    (tmp_path / "email" / ".hidden.eml").write_text("From: x\n")

    assert list_outbox(tmp_path).entries == []


def test_outbox_file_names_cannot_leave_the_outbox(tmp_path: Path) -> None:
    (tmp_path / "email").mkdir()
    (tmp_path / "email" / "ok.eml").write_text("Subject: ok\n\nbody")
    (tmp_path / "secret.eml").write_text("Subject: secret\n\n")
    (tmp_path / "email" / "link.eml").symlink_to(tmp_path / "secret.eml")

    assert outbox_file(tmp_path, "email", "ok.eml") == (tmp_path / "email" / "ok.eml").resolve()
    for name in (
        "../secret.eml",
        "..",
        "/etc/passwd",
        "%2e%2e%2fsecret.eml",
        "link.eml",
        "ok.json",
        ".ok.eml",
    ):
        assert outbox_file(tmp_path, "email", name) is None, name
    assert outbox_file(tmp_path, "../email", "ok.eml") is None
    assert not is_plain_name("a/b") and not is_plain_name("..eml") and is_plain_name("20261214T0900-ab.eml")


def _season_outbox(folder: Path) -> None:
    """Three emails on two days and one post, written by the real file channels."""
    moments = iter(
        [
            datetime(2026, 12, 13, 22, 30, tzinfo=UTC),  # 14 Dec in Tallinn (UTC+2)
            datetime(2026, 12, 14, 9, 0, tzinfo=UTC),
            datetime(2026, 12, 18, 9, 0, tzinfo=UTC),
            datetime(2026, 12, 14, 10, 0, tzinfo=UTC),
        ]
    )
    current = [datetime(2026, 12, 1, tzinfo=UTC)]
    emails = OutboxEmailChannel(folder / "email", now=lambda: current[0])
    for to, subject, campaign in (
        ("ana@example.ro", "Order by Dec 19", "shipping-deadlines"),
        ("bob@example.com", "Happy holidays, Bob", "holiday-greetings"),
        ("ana@example.ro", "Your gift card", "gift-card-welcome"),
    ):
        current[0] = next(moments)
        emails.send(
            EmailMessage(
                to_email=to,
                subject=subject,
                html="<p>x</p>",
                text="x",
                from_email="hello@shop.example.com",
                headers={"X-Tidings-Delivery": subject[:5], "X-Tidings-Campaign": campaign},
            )
        )
    current[0] = next(moments)
    OutboxSocialChannel(folder / "social", now=lambda: current[0]).post(
        SocialPost(text="5 days left to order", campaign="shipping-countdown")
    )


def _titles(folder: Path, **fields: str) -> list[str]:
    listing = list_outbox(folder, query=OutboxQuery.from_query(fields), zone=ZoneInfo("Europe/Tallinn"))
    return sorted(entry.title for entry in listing.entries)


def test_outbox_search_by_address_campaign_subject_and_day(tmp_path: Path) -> None:
    _season_outbox(tmp_path)

    assert _titles(tmp_path, address="ANA@") == ["Order by Dec 19", "Your gift card"]
    assert _titles(tmp_path, campaign="shipping") == ["5 days left to order", "Order by Dec 19"]
    assert _titles(tmp_path, subject="holidays") == ["Happy holidays, Bob"]
    assert _titles(tmp_path, **{"from": "2026-12-14", "to": "2026-12-14"}) == [
        "5 days left to order",
        "Happy holidays, Bob",
        "Order by Dec 19",  # sent 22:30 UTC on the 13th: the 14th in the shop's zone
    ]
    assert _titles(tmp_path, address="ana@", **{"from": "2026-12-15"}) == ["Your gift card"]
    assert _titles(tmp_path, subject="nothing like this") == []


def test_outbox_search_stops_at_the_limit_and_says_so(tmp_path: Path) -> None:
    _season_outbox(tmp_path)

    listing = list_outbox(tmp_path, limit=1, query=OutboxQuery(address="ana"), zone=ZoneInfo("UTC"))

    assert len(listing.entries) == 1 and listing.limited


def test_a_search_date_that_is_not_a_date_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidQuery, match="from: expected a date like 2026-12-14"):
        OutboxQuery.from_query({"from": "14/12/2026"})
