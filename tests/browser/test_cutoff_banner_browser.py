"""The order-by banner embedded in a shop's page on another origin, in a real Chromium, per locale."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import pytest
import uvicorn
from playwright.sync_api import Page, expect
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.settings import Settings
from engine.web.listen import bind_socket
from engine.web.public import create_public_app

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 19, 8, 0, tzinfo=UTC)  # Estonia's standard cutoff has passed, express has not

SHOP_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title></head>
<body style="font: 16px/1.5 Georgia, serif; margin: 2rem; background: #f4efe8; color: #2b2420">
<h1>Nordlys &amp; Brad</h1>
<div id="order-by">loading…</div>
<script>
  fetch(new URLSearchParams(location.search).get("banner"))
    .then((response) => response.ok ? response.text() : Promise.reject(response.status))
    .then((html) => { document.getElementById("order-by").innerHTML = html; })
    .catch((why) => { document.getElementById("order-by").textContent = "failed: " + why; });
</script>
</body></html>
"""


class _ShopPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        body = SHOP_PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def public_url(tmp_path: Path, sqlite_engine: Engine) -> Iterator[str]:
    """The public app over the shipped schedules, served by uvicorn in a thread on a free port."""
    for folder in ("schedules", "templates"):
        shutil.copytree(REPO / folder, tmp_path / "shop" / folder)
    settings = Settings(workspace=tmp_path / "shop", secret_key="c" * 40, _env_file=None)  # type: ignore[call-arg]
    app = create_public_app(settings, sqlite_engine, FakeClock(NOW))
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the public app did not start")
        threading.Event().wait(0.02)  # waiting for a real server thread
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def shop_url() -> Iterator[str]:
    """A shop's page on another origin (another port), which fetches the banner across origins."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ShopPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("country", "locale", "title", "express"),
    [
        ("EE", "et", "Viimased tellimisajad", "Kiirtarne (DPD): esmaspäev, 21. detsember, 12:00"),
        ("RO", "ro", "Comandă până la aceste termene", "Livrare expres (Sameday): luni, 21 decembrie, 14:00"),
        ("US", "en", "Order by these times", "Express delivery (UPS 2nd Day Air): Monday, December 21, 5:00"),
    ],
)
def test_the_banner_shows_in_a_shops_page_in_each_language(
    page: Page,
    public_url: str,
    shop_url: str,
    artifacts: Path,
    country: str,
    locale: str,
    title: str,
    express: str,
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    banner = f"{public_url}/cutoffs/banner?country={country}&locale={locale}"
    page.goto(f"{shop_url}?banner={quote(banner, safe='')}")
    box = page.locator("#order-by .tidings-cutoffs")
    expect(box).to_be_visible()
    expect(box).to_have_attribute("lang", locale)
    expect(box.locator(".tidings-cutoffs__title")).to_contain_text(title)
    express_row = box.locator('[data-method="express"]')
    expect(express_row).to_contain_text(express)
    expect(express_row).not_to_have_class("tidings-cutoffs__row tidings-cutoffs__row--passed")
    standard_row = box.locator('[data-method="standard"]')
    expect(standard_row).to_have_class("tidings-cutoffs__row tidings-cutoffs__row--passed")
    assert standard_row.evaluate("row => getComputedStyle(row).textDecorationLine") == "line-through"
    assert errors == []
    path = artifacts / f"cutoff-banner-{locale}.png"
    box.screenshot(path=str(path))
    assert path.stat().st_size > 0
