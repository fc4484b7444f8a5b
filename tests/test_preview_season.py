"""The timeline's season chart, read from the simulation report."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from engine.web.preview.season import CHART_HEIGHT, ReportError, build_chart, read_report


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

    days = read_report(report)
    assert days is not None
    chart = build_chart(days)

    assert [d.day for d in chart.days] == [date(2026, 12, 1), date(2026, 12, 2), date(2026, 12, 3)]
    assert chart.campaigns == ["shipping-deadlines", "holiday-greetings"]
    assert chart.peak == 400
    busiest = [bar for bar in chart.bars if bar.title.startswith("2026-12-02")]
    assert sum(bar.height for bar in busiest) == pytest.approx(CHART_HEIGHT)
    assert min(bar.y for bar in busiest) == pytest.approx(0)
    assert "2026-12-02 · holiday-greetings: 300" in {bar.title for bar in busiest}
    assert chart.as_dict()["days"][1]["total"] == 400


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
