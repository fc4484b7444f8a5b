"""The timeline's season chart, read from the simulation report."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from engine.display import campaign_colours
from engine.web.preview.season import (
    BAR_GAP,
    BAR_WIDTH,
    CHART_HEIGHT,
    ReportError,
    build_chart,
    coverage,
    read_report,
)


def _write(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_no_report_means_no_chart(tmp_path: Path) -> None:
    assert read_report(tmp_path / "simulation.json") is None


def test_report_days_become_stacked_bars_scaled_to_the_busiest_day(tmp_path: Path) -> None:
    report = _write(
        tmp_path / "simulation.json",
        {
            "from": "2026-12-01",
            "to": "2026-12-03",
            "days": [
                {"date": "2026-12-02", "counts": {"holiday-greetings": 300, "shipping-deadlines": 100}},
                {"date": "2026-12-01", "counts": {"shipping-deadlines": 200}},
                {"date": "2026-12-03", "counts": {}},
            ],
        },
    )

    run = read_report(report)
    assert run is not None
    chart = build_chart(run)

    assert [d.day for d in chart.days] == [date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)]
    assert chart.campaigns == ["holiday-greetings", "shipping-deadlines"]
    assert chart.peak == 400
    busiest = [bar for bar in chart.bars if bar.title.startswith("Wed 02 Dec 2026")]
    assert sum(bar.height for bar in busiest) == pytest.approx(CHART_HEIGHT)
    assert min(bar.y for bar in busiest) == pytest.approx(0)
    assert "Wed 02 Dec 2026 · holiday-greetings: 300" in {bar.title for bar in busiest}
    assert chart.as_dict()["days"][1]["total"] == 400


def test_days_without_sends_are_drawn_as_empty_days_of_the_run(tmp_path: Path) -> None:
    report = _write(
        tmp_path / "simulation.json",
        {"from": "2026-12-01", "to": "2026-12-05", "days": [{"date": "2026-12-03", "counts": {"a": 5}}]},
    )
    run = read_report(report)
    assert run is not None

    chart = build_chart(run)

    assert [d.total for d in chart.days] == [0, 0, 5, 0, 0]
    assert chart.width == 5 * (BAR_WIDTH + BAR_GAP)


def test_twelve_campaigns_get_twelve_different_colours_as_in_the_html_report(tmp_path: Path) -> None:
    ids = [f"campaign-{n:02d}" for n in range(12)]
    days = [{"date": f"2026-12-{n + 1:02d}", "counts": {cid: n + 1}} for n, cid in enumerate(ids)]
    run = read_report(_write(tmp_path / "simulation.json", {"campaigns": {i: {} for i in ids}, "days": days}))
    assert run is not None

    chart = build_chart(run)

    assert len(set(chart.colours.values())) == 12
    assert chart.colours == campaign_colours(sorted(ids))


def test_the_run_says_when_it_ran_and_which_days_it_covers(tmp_path: Path) -> None:
    run = read_report(
        _write(
            tmp_path / "simulation.json",
            {
                "from": "2026-12-10",
                "to": "2026-12-16",
                "generated_at": "2026-11-20T10:00:00+00:00",
                "timezone": "Europe/Tallinn",
                "days": [],
            },
        )
    )
    assert run is not None
    assert (run.start, run.end, run.length_days) == (date(2026, 12, 10), date(2026, 12, 16), 7)
    assert run.generated_at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_a_run_that_misses_campaign_dates_is_partial_and_names_them(tmp_path: Path) -> None:
    week = {"from": "2026-12-10", "to": "2026-12-16", "days": []}
    run = read_report(_write(tmp_path / "simulation.json", week))
    season = read_report(_write(tmp_path / "all.json", {**week, "from": "2026-12-01", "to": "2027-01-31"}))
    assert run is not None and season is not None
    dated = {
        "holiday-greetings": (date(2026, 12, 14), date(2026, 12, 14)),
        "shipping-deadlines": (date(2026, 12, 1), date(2026, 12, 24)),
        "january-apology": (date(2027, 1, 5), date(2027, 1, 5)),
    }

    partial = coverage(run, dated)
    whole = coverage(season, dated)

    assert not partial.whole and set(partial.outside) == {"shipping-deadlines", "january-apology"}
    assert partial.season == (date(2026, 12, 1), date(2027, 1, 5))
    assert whole.whole and whole.outside == {}
    assert coverage(run, {}).season is None


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not JSON"),
        ({"days": "many"}, '"days" list'),
        ({"days": [{"date": "Dec 1", "counts": {}}]}, "YYYY-MM-DD"),
        ({"days": [{"date": "2026-12-01", "counts": {"x": -1}}]}, "whole numbers"),
        ({"days": [{"date": "2026-12-01", "counts": {"x": True}}]}, "whole numbers"),
    ],
)
def test_a_malformed_report_is_a_one_line_error_naming_the_file(
    tmp_path: Path, document: object, expected: str
) -> None:
    path = tmp_path / "simulation.json"
    if isinstance(document, str):
        path.write_text(document)
    else:
        _write(path, document)

    with pytest.raises(ReportError) as caught:
        read_report(path)

    assert expected in str(caught.value) and str(path) in str(caught.value)
    assert "\n" not in str(caught.value)
