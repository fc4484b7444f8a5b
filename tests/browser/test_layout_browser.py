"""Layout facts in a real Chromium, at a desktop 1280 px and a phone 390 px, with screenshots.

The preview's template page (inbox strip, checks panel, side panel against the email, send test
then reload), its outbox and timeline, the public status page and the season report. Boxes are
compared, not pixels: "does not overlap", "does not overflow", "is below".
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page, expect
from preview_server import RunningPreview
from servers.smtp_server import SmtpServer
from starlette.testclient import TestClient
from test_preview_pages import make_workspace

from engine.clock import FakeClock
from engine.runtime.upcoming import NextSend
from engine.settings import load_settings
from engine.simulation.report import CampaignSummary, SeasonReport
from engine.store import make_engine, upgrade
from engine.web.public import create_public_app

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
WIDTHS = {"desktop": 1280, "phone": 390}
LONG_ADDRESS = "anastasia.konstantinopoulou-vasilescu.gifts@winter-knitwear-and-candles.example.com"
LONG_CARD = """---
subject: "Hello {{ contact.first_name }}, your winter order is on its way"
preheader: "Track the parcel, or change the delivery day before it leaves the warehouse."
---
<mjml><mj-body><mj-section><mj-column>
<mj-image src="https://images.invalid/{{ 'very-long-folder-name/' * 6 }}hero.png" alt="A parcel" />
<mj-text color="#bbbbbb">Hi {{ contact.first_name }}, this pale text is hard to read.</mj-text>
<mj-text><a href="https://shop.example.com/{{ 'a-long-path-segment-without-breaks-' * 6 }}">Click here</a>
</mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "shop")
    (root / "images").mkdir()
    for image in (REPO / "images").glob("*.png"):
        (root / "images" / image.name).write_bytes(image.read_bytes())
    card = root / "templates" / "long-card"
    card.mkdir()
    (card / "email.mjml").write_text(LONG_CARD, encoding="utf-8")
    (card / "sample.yaml").write_text(
        f"contact: {{id: 9, email: {LONG_ADDRESS}, first_name: Anastasia, locale: en}}\n", encoding="utf-8"
    )
    (root / "var").mkdir(exist_ok=True)
    days = [
        {
            "date": (date(2026, 12, 10) + timedelta(days=n)).isoformat(),
            "counts": {"holiday-greetings": 40 + n},
        }
        for n in range(5)
    ]
    report = {
        "from": "2026-12-10",
        "to": "2026-12-14",
        "generated_at": "2026-11-20T08:00:00+00:00",
        "days": days,
    }
    (root / "var" / "simulation.json").write_text(json.dumps(report))
    return root


@pytest.fixture
def preview(workspace: Path, smtp: SmtpServer) -> Iterator[RunningPreview]:
    settings = load_settings(
        workspace=workspace,
        database_url=f"sqlite:///{workspace / 'var' / 'tidings.db'}",
        secret_key="b" * 40,
        email_channel="smtp",
        smtp_url=smtp.url(),
        smtp_require_tls=False,  # a local relay without credentials
        timezone="Europe/Tallinn",
    )
    with RunningPreview(settings) as running:
        yield running


def _page(browser: Browser, width: int) -> Page:
    context = browser.new_context(viewport={"width": width, "height": 900})
    return context.new_page()


def _box(page: Page, selector: str) -> dict[str, float]:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def _overflowing(page: Page, selector: str) -> list[str]:
    """Elements under ``selector`` wider than their box (text running out of the panel)."""
    return page.eval_on_selector_all(
        selector,
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent.slice(0, 60))",
    )


@pytest.mark.parametrize("device", list(WIDTHS))
def test_template_page_layout_holds_at_desktop_and_phone_width(
    browser: Browser, preview: RunningPreview, artifacts: Path, device: str
) -> None:
    width = WIDTHS[device]
    page = _page(browser, width)
    page.goto(f"{preview.url}/templates/long-card")
    expect(page.locator("#subject")).to_contain_text("your winter order")
    expect(page.locator("#check-accessibility")).to_contain_text("WCAG 2.1 1.4.3")
    page.screenshot(path=str(artifacts / f"preview-template-{width}.png"), full_page=True)

    recipient, preheader, subject = _box(page, "#inbox-to"), _box(page, "#preheader"), _box(page, "#subject")
    assert not _overlap(recipient, preheader) and not _overlap(recipient, subject)
    inbox = _box(page, "#inbox")
    assert recipient["x"] + recipient["width"] <= inbox["x"] + inbox["width"] + 1

    aside = _box(page, "aside")
    assert aside["x"] + aside["width"] <= width + 1  # the panel stays on the screen
    assert _overflowing(page, "aside li, aside code, aside p") == []  # long URLs wrap inside it

    frame = _box(page, ".frame-wrap")
    assert not _overlap(aside, frame)  # the side panel never covers the email
    if device == "phone":
        assert aside["y"] >= frame["y"] + frame["height"]  # on a phone it comes below the email
        assert frame["x"] >= 0 and frame["width"] <= width
    page.context.close()


def test_send_test_then_reload_does_not_send_again(
    browser: Browser, preview: RunningPreview, smtp: SmtpServer, artifacts: Path
) -> None:
    page = _page(browser, 1280)
    page.goto(f"{preview.url}/templates/preview-card")
    page.locator("#send-to").fill("marketer@example.org")
    page.locator("#send-button").click()
    expect(page.locator("#notice")).to_contain_text(
        "Sent [TEST] Hello Ana, your card to marketer@example.org"
    )
    assert "notice=" in page.url

    page.reload()
    expect(page.locator("#notice")).to_contain_text("Sent [TEST]")
    page.screenshot(path=str(artifacts / "preview-send-test-after-reload.png"), full_page=True)

    assert len(smtp.received) == 1
    page.context.close()


@pytest.mark.parametrize("device", list(WIDTHS))
def test_timeline_and_outbox_read_well_at_both_widths(
    browser: Browser, preview: RunningPreview, artifacts: Path, device: str
) -> None:
    width = WIDTHS[device]
    page = _page(browser, width)
    page.goto(f"{preview.url}/timeline")
    expect(page.locator("#season-run")).to_contain_text("Thu 10 Dec 2026 – Mon 14 Dec 2026")
    expect(page.locator("#season-run")).to_contain_text("run Fri 20 Nov 2026 10:00")
    page.screenshot(path=str(artifacts / f"preview-timeline-{width}.png"), full_page=True)
    assert _box(page, "#season-run")["x"] + _box(page, "#season-run")["width"] <= width + 1

    page.goto(f"{preview.url}/outbox?address=nobody")
    expect(page.locator("#outbox")).to_contain_text("No message matches this search.")
    page.screenshot(path=str(artifacts / f"preview-outbox-{width}.png"), full_page=True)
    assert _box(page, "#outbox-search")["x"] + _box(page, "#outbox-search")["width"] <= width + 1
    page.context.close()


def test_the_status_page_reads_on_a_phone_and_a_desktop(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    root = make_workspace(tmp_path / "shop")
    url = f"sqlite:///{tmp_path / 'tidings.db'}"
    engine = make_engine(url)
    upgrade(engine)
    settings = load_settings(
        workspace=root, database_url=url, secret_key="s" * 40, timezone="Europe/Bucharest"
    )
    now = datetime(2026, 12, 13, 9, 0, tzinfo=UTC)
    tokyo, bucharest = ZoneInfo("Asia/Tokyo"), ZoneInfo("Europe/Bucharest")
    moments = [
        NextSend("holiday-greetings", "2026-12-14T10:00", now + timedelta(hours=12), tokyo, 3412, False),
        NextSend("shipping-countdown", "x", now + timedelta(days=1), bucharest, 1, True),
    ]
    app = create_public_app(settings, engine, FakeClock(now), next_up=lambda _now, _count: moments)
    with TestClient(app) as client:
        html = client.get("/").text
    engine.dispose()
    for device, width in WIDTHS.items():
        page = _page(browser, width)
        page.set_content(html)
        expect(page.locator("#next-up")).to_contain_text("3,412")
        expect(page.locator("#next-up")).to_contain_text("Sun 13 Dec 2026 23:00")  # 21:00 UTC in Bucharest
        expect(page.locator("#next-up")).to_contain_text(
            "first contacts at 2026-12-14 06:00 JST (Asia/Tokyo)"
        )
        page.screenshot(path=str(artifacts / f"public-status-{width}.png"), full_page=True)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, device
        page.context.close()


def test_the_season_report_gives_every_campaign_its_own_colour_and_names_the_zone(
    browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    zone = ZoneInfo("Europe/Bucharest")
    ids = [f"campaign-{letter}" for letter in "abcdefghijkl"]
    start = date(2026, 12, 1)
    per_day = {
        start + timedelta(days=n): Counter({cid: 10 + n for cid in ids[n % 12 : n % 12 + 3]})
        for n in range(30)
    }
    campaigns = {cid: CampaignSummary(cid, cid.title(), sent=100) for cid in ids}
    campaigns["campaign-a"].note_send(datetime(2026, 12, 14, 8, 0, tzinfo=UTC))
    report = SeasonReport(
        start, start + timedelta(days=29), zone, 40, 3.2, tmp_path, campaigns, per_day, {},
        generated_at=datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
    )  # fmt: skip
    path = tmp_path / "season.html"
    report.write_html(path)

    page = _page(browser, 1280)
    page.goto(path.as_uri())
    colours = page.eval_on_selector_all(
        "#legend .swatch", "els => els.map(e => getComputedStyle(e).backgroundColor)"
    )
    page.screenshot(path=str(artifacts / "season-report-1280.png"), full_page=True)
    page.context.close()

    assert len(colours) == 12 and len(set(colours)) == 12
    text = path.read_text(encoding="utf-8")
    assert "Europe/Bucharest, the shop&#39;s time zone" in text
    assert "Mon 14 Dec 2026 10:00" in text  # 08:00 UTC, shown in Bucharest
    assert "on Fri 20 Nov 2026 10:00" in text
