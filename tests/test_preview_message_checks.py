"""The preview's message checks and images: links, spam, accessibility, images that do not load,
and the demo's images served locally by the preview and the public app."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from servers.image_server import ImageServer
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient
from test_preview_pages import make_workspace, settings_for

from engine.clock import FakeClock
from engine.web.preview import create_preview_app
from engine.web.public import create_public_app

REPO = Path(__file__).resolve().parent.parent
PNG = (REPO / "images" / "logo.png").read_bytes()

PROBLEMS = """---
subject: "Hello {{ contact.first_name }}"
---
<mjml><mj-body><mj-section><mj-column>
<mj-image src="CDN/ok/hero.png" alt="Our winter shop" />
<mj-image src="CDN/missing/sweater.png" alt="A sweater" />
<mj-image src="CDN/page/not-an-image.png" alt="A page" />
<mj-image src="{{ shop.images_url }}/no-such-file.png" alt="Gone" />
<mj-text color="#cccccc">Hi {{ contact.first_name }}, this grey text is hard to read on white.</mj-text>
<mj-text><a href="https://shop.example.com/a-very-long-path/{{ 'and-going/' * 12 }}">Click here</a></mj-text>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ shop.postal_address }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


@pytest.fixture
def cdn() -> Iterator[ImageServer]:
    with ImageServer() as server:
        yield server


@pytest.fixture
def workspace(tmp_path: Path, cdn: ImageServer) -> Path:
    root = make_workspace(tmp_path / "shop")
    shutil_copy_images(root)
    folder = root / "templates" / "checked"
    folder.mkdir()
    (folder / "email.mjml").write_text(PROBLEMS.replace("CDN", cdn.url), encoding="utf-8")
    (folder / "sample.yaml").write_text(
        "contact: {id: 7, email: ana@example.com, first_name: Ana, locale: en}\n", encoding="utf-8"
    )
    return root


def shutil_copy_images(root: Path) -> None:
    (root / "images").mkdir()
    for image in (REPO / "images").glob("*.png"):
        (root / "images" / image.name).write_bytes(image.read_bytes())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def client(workspace: Path, sqlite_engine: Engine, clock: FakeClock) -> Iterator[TestClient]:
    app = create_preview_app(settings_for(workspace), engine=sqlite_engine, clock=clock, watch=False)
    with TestClient(app, base_url="http://127.0.0.1:8025") as test_client:
        yield test_client


def _sections(client: TestClient, name: str) -> dict[str, dict[str, Any]]:
    api = client.get(f"/api/templates/{name}").json()
    return {section["check"]: section for section in api["message_checks"]}


def _messages(section: dict[str, Any]) -> list[str]:
    return [f["message"] for f in section["findings"]]


def test_images_that_do_not_load_are_each_a_finding_naming_the_image(
    client: TestClient, cdn: ImageServer
) -> None:
    images = _sections(client, "checked")["images"]

    messages = _messages(images)
    assert len(messages) == 3 and images["problems"] == 3
    assert any(m.endswith("/missing/sweater.png answers 404") for m in messages)
    assert any("not-an-image.png is text/html" in m for m in messages)
    assert any("no image 'no-such-file.png' in the workspace's images/ folder" in m for m in messages)
    assert all(f["element"].startswith("<img ") for f in images["findings"])
    assert not any("/ok/hero.png" in m for m in messages)


def test_remote_image_answers_are_kept_for_a_while(
    client: TestClient, cdn: ImageServer, clock: FakeClock
) -> None:
    _sections(client, "checked")
    asked = len(cdn.exchanges)
    _sections(client, "checked")
    assert len(cdn.exchanges) == asked

    clock.advance(600)
    _sections(client, "checked")
    assert len(cdn.exchanges) == 2 * asked


def test_the_page_lists_contrast_and_link_text_findings_with_their_elements(client: TestClient) -> None:
    sections = _sections(client, "checked")
    page = client.get("/templates/checked").text

    accessibility = sections["accessibility"]
    rules = {f["rule"] for f in accessibility["findings"]}
    assert {"contrast", "link-name"} <= rules
    contrast = next(f for f in accessibility["findings"] if f["rule"] == "contrast")
    assert "#cccccc on #ffffff" in contrast["message"] and "this grey text" in contrast["element"]
    assert 'id="check-accessibility"' in page and "WCAG 2.1 1.4.3" in page
    assert 'id="check-spam"' in page and 'id="check-links"' in page and 'id="check-images"' in page


def test_the_shipped_templates_load_every_image_from_the_workspace(client: TestClient) -> None:
    for name in ("holiday-greeting", "shipping-reminder", "win-back"):
        sections = _sections(client, name)
        assert sections["images"]["findings"] == [], name
        assert sections["links"]["problems"] == 0, name


def test_the_preview_shows_the_demo_images_from_its_own_images_path(client: TestClient) -> None:
    sent = client.get("/api/templates/holiday-greeting").json()["html"]
    shown = client.get("/render/holiday-greeting").text
    logo = client.get("/images/logo.png")

    assert 'src="http://127.0.0.1:8026/images/holiday-candles.png"' in sent  # what is sent: the public app
    assert 'src="/images/holiday-candles.png"' in shown  # what the preview's frame loads: itself
    assert logo.status_code == 200 and logo.headers["content-type"] == "image/png" and logo.content == PNG
    assert "images from images/" in client.get("/templates/holiday-greeting").text.lower()


@pytest.mark.parametrize(
    "path",
    ["/images/../campaigns/holiday-greetings.yaml", "/images/%2e%2e/var/secret_key", "/images/.hidden.png"],
)
def test_only_image_files_inside_images_are_served(client: TestClient, workspace: Path, path: str) -> None:
    (workspace / "images" / ".hidden.png").write_bytes(PNG)
    assert client.get(path).status_code == 404


def test_the_public_app_serves_the_images_the_emails_point_at(workspace: Path, sqlite_engine: Engine) -> None:
    (workspace / "images" / "drawing.svg").write_text("<svg><script>alert(1)</script></svg>")
    settings = settings_for(workspace)
    app = create_public_app(settings, sqlite_engine, FakeClock(datetime(2026, 12, 1, tzinfo=UTC)))
    with TestClient(app) as public:
        logo = public.get("/images/logo.png")
        svg = public.get("/images/drawing.svg")
        missing = public.get("/images/nothing.png")

    assert logo.status_code == 200 and logo.content == PNG
    assert logo.headers["x-content-type-options"] == "nosniff"
    assert svg.status_code == 404 and missing.status_code == 404


def test_a_shop_with_its_own_image_host_keeps_it_in_preview_and_send(
    workspace: Path, sqlite_engine: Engine, clock: FakeClock, cdn: ImageServer
) -> None:
    settings = settings_for(workspace, shop={"images_url": f"{cdn.url}/ok"})
    app = create_preview_app(settings, engine=sqlite_engine, clock=clock, watch=False)
    with TestClient(app, base_url="http://127.0.0.1:8025") as custom:
        shown = custom.get("/render/holiday-greeting").text
        sections = _sections(custom, "holiday-greeting")

    assert f'src="{cdn.url}/ok/holiday-candles.png"' in shown
    assert sections["images"]["findings"] == []
