"""``validate`` refuses a transactional campaign that hands out a discount: that is promotional."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from engine.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_a_transactional_campaign_with_a_coupon_is_a_problem_at_its_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for part in ("campaigns", "templates", "schedules"):
        shutil.copytree(REPO / part, tmp_path / part)
    apology = tmp_path / "campaigns" / "january-apology.yaml"
    apology.write_text(apology.read_text().replace("category: marketing", "category: transactional"))

    code = main(["--workspace", str(tmp_path), "validate"])
    err = capsys.readouterr().err

    assert code == 1
    assert (
        "january-apology.yaml:17:5: campaign 'january-apology' is transactional but hands out a coupon" in err
    )
