"""The preview in a real headless Chromium: pickers, widths, live reload, errors, send test, screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from preview_server import RunningPreview
from servers.smtp_server import SmtpServer
from test_preview_pages import BROKEN, make_workspace

from engine.settings import load_settings

pytestmark = pytest.mark.browser
RELOAD_SECONDS = 5  # the watcher answers in well under a second; the margin is for a loaded CI machine


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with SmtpServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "shop")


@pytest.fixture
def preview(workspace: Path, smtp: SmtpServer) -> Iterator[RunningPreview]:
    settings = load_settings(
        workspace=workspace,
        database_url=f"sqlite:///{workspace / 'var' / 'tidings.db'}",
        secret_key="b" * 40,
        email_channel="smtp",
        smtp_url=smtp.url(),
        smtp_require_tls=False,  # a local relay without credentials
        public_url="https://shop.example.com",
    )
    with RunningPreview(settings) as running:
        yield running


def _frame_width(page: Page) -> float:
    box = page.locator("#email-frame").bounding_box()
    assert box is not None
    return box["width"]


def test_template_page_switches_locale_and_width_and_keeps_screenshots(
    page: Page, preview: RunningPreview, artifacts: Path
) -> None:
    page.goto(f"{preview.url}/templates/preview-card")
    expect(page.locator("#subject")).to_have_text("Hello Ana, your card")
    expect(page.frame_locator("#email-frame").get_by_text("Hi Ana, welcome to the shop.")).to_be_visible()
    assert _frame_width(page) == pytest.approx(600, abs=2)
    page.screenshot(path=str(artifacts / "preview-desktop.png"), full_page=True)

    page.locator("#locale").select_option("ro")
    expect(page.locator("#subject")).to_have_text("Bună Ana, your card")
    expect(page.frame_locator("#email-frame").get_by_text("Hi Ana, bine ai venit.")).to_be_visible()

    page.get_by_label("mobile 375").check()
    expect(page.locator("#email-frame")).to_have_class("email w-mobile light")
    assert _frame_width(page) == pytest.approx(375, abs=2)
    page.screenshot(path=str(artifacts / "preview-mobile.png"), full_page=True)

    assert (artifacts / "preview-desktop.png").stat().st_size > 0
    assert (artifacts / "preview-mobile.png").stat().st_size > 0


def test_saving_a_template_reloads_the_open_page(
    page: Page, preview: RunningPreview, workspace: Path
) -> None:
    page.goto(f"{preview.url}/templates/preview-card")
    expect(page.locator("#live")).to_have_text("live")
    template = workspace / "templates" / "preview-card" / "email.mjml"

    template.write_text(template.read_text().replace("welcome to the shop", "the candles are back"))

    frame = page.frame_locator("#email-frame")
    expect(frame.get_by_text("Hi Ana, the candles are back.")).to_be_visible(timeout=RELOAD_SECONDS * 1000)


def test_a_broken_template_shows_its_file_and_line_in_page_and_frame(
    page: Page, preview: RunningPreview, workspace: Path
) -> None:
    page.goto(f"{preview.url}/templates/preview-card")
    expect(page.locator("#live")).to_have_text("live")

    (workspace / "templates" / "preview-card" / "email.mjml").write_text(BROKEN)

    expect(page.locator("#render-error")).to_contain_text(
        "templates/preview-card/email.mjml:5:", timeout=RELOAD_SECONDS * 1000
    )
    expect(page.frame_locator("#email-frame").locator("#error")).to_contain_text(
        "templates/preview-card/email.mjml:5:"
    )


def test_send_test_reaches_the_smtp_server(page: Page, preview: RunningPreview, smtp: SmtpServer) -> None:
    page.goto(f"{preview.url}/templates/preview-card")

    page.locator("#send-to").fill("marketer@example.org")
    page.locator("#send-button").click()

    expect(page.locator("#notice")).to_contain_text(
        "Sent [TEST] Hello Ana, your card to marketer@example.org"
    )
    (received,) = smtp.received
    assert received.rcpt_tos == ("marketer@example.org",)
    assert received.message["Subject"] == "[TEST] Hello Ana, your card"
