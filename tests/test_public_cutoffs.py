"""GET /cutoffs and /cutoffs/banner: the order-by dates of the one schedule, as the emails say them."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from babel.dates import format_datetime
from fastapi.testclient import TestClient
from render_support import SECRET
from sqlalchemy.engine import Engine

from engine.clock import FakeClock
from engine.render import Record, Renderer, load_sample, sample_context
from engine.settings import Settings, load_settings
from engine.web.public import create_public_app
from engine.workspace.loader import load_schedules

REPO = Path(__file__).resolve().parent.parent
# Between Estonia's standard (18 Dec 12:00 Tallinn) and express (21 Dec 12:00 Tallinn) cutoffs.
BETWEEN = datetime(2026, 12, 19, 8, 0, tzinfo=UTC)
# The shipped order-by reminder's patterns, one per locale file (templates/shipping-reminder).
REMINDER = {
    "en": ("EEEE, MMMM d, h:mm a", "US"),
    "ro": ("EEEE, d MMMM, HH:mm", "RO"),
    "et": ("EEEE, d. MMMM, HH:mm", "EE"),
}


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for folder in ("schedules", "templates"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def _client(engine: Engine, workspace: Path, now: datetime = BETWEEN) -> TestClient:
    settings = Settings(workspace=workspace, secret_key=SECRET, _env_file=None)  # type: ignore[call-arg]
    return TestClient(create_public_app(settings, engine, FakeClock(now)))


def test_cutoffs_list_every_row_in_its_own_zone_with_passed_by_the_clock(
    sqlite_engine: Engine, workspace: Path
) -> None:
    with _client(sqlite_engine, workspace) as client:
        response = client.get("/cutoffs")
    assert response.status_code == 200
    body = response.json()
    assert body["deliver_before"] == "2026-12-24" and body["default_method"] == "standard"
    rows = {(row["country"], row["method"]): row for row in body["cutoffs"]}
    assert len(rows) == 6
    assert rows["EE", "standard"] == {
        "country": "EE",
        "method": "standard",
        "carrier": "Omniva",
        "order_by": "2026-12-18T12:00:00+02:00",
        "timezone": "Europe/Tallinn",
        "deliver_before": "2026-12-24",
        "passed": True,
    }
    assert rows["EE", "express"]["passed"] is False
    assert rows["US", "standard"]["order_by"] == "2026-12-17T17:00:00-05:00"
    assert response.headers["access-control-allow-origin"] == "*"


def test_one_countrys_cutoffs_and_sensible_errors(sqlite_engine: Engine, workspace: Path) -> None:
    with _client(sqlite_engine, workspace) as client:
        romania = client.get("/cutoffs", params={"country": "ro"})
        unknown = client.get("/cutoffs", params={"country": "DE"})
        malformed = client.get("/cutoffs", params={"country": "Romania"})
    assert {row["carrier"] for row in romania.json()["cutoffs"]} == {"FAN Courier", "Sameday"}
    assert unknown.status_code == 404 and "countries with cutoffs: EE, RO, US" in unknown.json()["error"]
    assert malformed.status_code == 400


@pytest.mark.parametrize("locale", sorted(REMINDER))
@pytest.mark.parametrize("country", ["EE", "RO", "US"])
def test_cutoffs_say_what_the_reminder_emails_say_for_each_country(
    sqlite_engine: Engine, workspace: Path, country: str, locale: str
) -> None:
    """The reminder rendered for a customer of each country shows the very date and time of /cutoffs."""
    settings = load_settings(workspace=workspace, secret_key=SECRET)
    schedules, _ = load_schedules(workspace)
    with _client(sqlite_engine, workspace) as client:
        listed = client.get("/cutoffs", params={"country": country}).json()["cutoffs"]
        banner = client.get("/cutoffs/banner", params={"country": country, "locale": locale}).text
    row = next(r for r in listed if r["method"] == "standard")
    order_by = datetime.fromisoformat(row["order_by"])

    sample = load_sample(workspace / "templates" / "shipping-reminder" / "sample.yaml", settings)
    cutoff = schedules.shipping_cutoff(country, "standard")
    assert cutoff is not None
    contact = {**sample["contact"], "country": country, "locale": locale, "timezone": row["timezone"]}
    context = sample_context({**sample, "contact": contact, "cutoff": None}, settings) | {
        "cutoff": Record(cutoff.as_context())
    }
    message = Renderer(settings, workspace / "templates").render_email("shipping-reminder", context)

    pattern, _ = REMINDER[locale]
    shown = format_datetime(order_by, pattern, tzinfo=order_by.tzinfo, locale=locale)
    assert shown in message.text and shown in message.html
    assert cutoff.order_by == order_by and cutoff.carrier == row["carrier"]
    assert f'<time datetime="{row["order_by"]}">{shown}</time>' in banner  # the website, in the same words


def test_the_banner_names_methods_with_the_workspace_labels_and_marks_passed_rows(
    sqlite_engine: Engine, workspace: Path
) -> None:
    with _client(sqlite_engine, workspace) as client:
        response = client.get("/cutoffs/banner", params={"country": "EE", "locale": "et-EE"})
    assert response.status_code == 200 and response.headers["content-language"] == "et"
    html = response.text
    assert "Tavatarne (Omniva)" in html and "Kiirtarne (DPD)" in html
    assert "enne kuupäeva 24. detsember" in html and "Ajavöönd: Ida-Euroopa aeg" in html
    standard = re.search(r'<li class="([^"]*)" data-method="standard"', html)
    express = re.search(r'<li class="([^"]*)" data-method="express"', html)
    assert standard and "passed" in standard.group(1) and "tähtaeg on möödas" in html
    assert express and "passed" not in express.group(1)


def test_the_banner_is_a_safe_fragment_to_embed(sqlite_engine: Engine, workspace: Path) -> None:
    schedule = workspace / "schedules" / "season-2026.yaml"
    schedule.write_text(
        schedule.read_text().replace("carrier: Omniva", 'carrier: "Omni<script>alert(1)</script>"')
    )
    with _client(sqlite_engine, workspace) as client:
        response = client.get("/cutoffs/banner", params={"country": "EE", "locale": "en"})
    assert response.status_code == 200
    assert "<script" not in response.text.lower() and "Omni&lt;script&gt;" in response.text
    assert not response.text.lstrip().lower().startswith(("<!doctype", "<html"))
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["content-security-policy"] == "default-src 'none'; style-src 'unsafe-inline'"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"country": "E"}, 400),
        ({"country": "EE", "locale": "<b>x</b>"}, 400),
        ({"country": "FI", "locale": "fi"}, 404),
    ],
)
def test_the_banner_refuses_what_it_cannot_show(
    sqlite_engine: Engine, workspace: Path, params: dict[str, str], status: int
) -> None:
    with _client(sqlite_engine, workspace) as client:
        response = client.get("/cutoffs/banner", params=params)
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == "*"
    assert "error" in response.json()


def test_a_language_without_banner_words_falls_back_to_the_default_locale(
    sqlite_engine: Engine, workspace: Path
) -> None:
    with _client(sqlite_engine, workspace) as client:
        response = client.get("/cutoffs/banner", params={"country": "EE", "locale": "de"})
    assert response.status_code == 200 and response.headers["content-language"] == "en"
    assert "Order by these times for delivery before December 24" in response.text


def _max_age(response: Any) -> int:
    match = re.fullmatch(r"public, max-age=(\d+)", response.headers["cache-control"])
    assert match, response.headers["cache-control"]
    return int(match.group(1))


def test_no_cache_keeps_an_open_deadline_past_its_cutoff(sqlite_engine: Engine, workspace: Path) -> None:
    standard = datetime(2026, 12, 18, 10, 0, tzinfo=UTC)  # Estonia's standard cutoff, 12:00 Tallinn
    for before in (timedelta(hours=3), timedelta(minutes=7), timedelta(seconds=20), timedelta(0)):
        now = standard - before
        with _client(sqlite_engine, workspace, now) as client:
            banner = client.get("/cutoffs/banner", params={"country": "EE", "locale": "et"})
            listed = client.get("/cutoffs", params={"country": "EE"})
        for response in (banner, listed):
            age = _max_age(response)
            assert 0 <= age <= 600
            if before > timedelta(0):
                assert now + timedelta(seconds=age) <= standard
    with _client(sqlite_engine, workspace, datetime(2027, 1, 2, tzinfo=UTC)) as client:
        assert _max_age(client.get("/cutoffs", params={"country": "EE"})) == 3600  # all passed


def test_an_edited_schedule_is_served_and_a_broken_edit_keeps_the_last_good_one(
    sqlite_engine: Engine, workspace: Path
) -> None:
    schedule = workspace / "schedules" / "season-2026.yaml"
    good = schedule.read_text()
    with _client(sqlite_engine, workspace) as client:
        assert client.get("/cutoffs", params={"country": "EE"}).json()["cutoffs"][0]["carrier"] == "Omniva"
        schedule.write_text(good.replace("carrier: Omniva", "carrier: Omniva Plus"))
        assert (
            client.get("/cutoffs", params={"country": "EE"}).json()["cutoffs"][0]["carrier"] == "Omniva Plus"
        )
        schedule.write_text(good.replace('order_by: "2026-12-18 12:00"', 'order_by: "soon"'))
        kept = client.get("/cutoffs", params={"country": "EE"})
    assert kept.status_code == 200 and kept.json()["cutoffs"][0]["carrier"] == "Omniva Plus"
