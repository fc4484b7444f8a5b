"""Workspace YAML under budgets: alias bombs, oversized files and library failures are located problems.

Every YAML file a workspace holds (campaigns, segments, schedules, a template's sample.yaml and
its front matter) is read through the same budgets; each test writes the hostile file where a
marketer would and reads it the way the engine does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from workspace_support import make_workspace

from engine.render.context import load_sample
from engine.render.errors import RenderError
from engine.render.renderer import Renderer
from engine.settings import Settings
from engine.workspace.loader import load_campaign_file, load_workspace
from engine.workspace.yaml_source import MAX_ALIAS_NODES, MAX_FILE_BYTES, parse_yaml

BOMB_LINES = [
    'l1: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
    *(f"l{level + 2}: &{chr(98 + level)} [{', '.join([f'*{chr(97 + level)}'] * 9)}]" for level in range(8)),
]


def bomb(first_line: int = 1) -> str:
    """A nine-level "billion laughs" (9⁹ strings once expanded), starting at ``first_line``."""
    return "\n" * (first_line - 1) + "\n".join(BOMB_LINES) + "\n"


def test_an_alias_bomb_in_a_campaign_is_one_problem_at_the_alias_that_crosses_the_budget(
    tmp_path: Path,
) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text("name: Laughs\n" + bomb(), encoding="utf-8")

    campaign, problems = load_campaign_file(path)

    assert campaign is None
    assert len(problems) == 1
    # l2..l4 copy 8,289 values through aliases; l5's first *d crosses 10,000.
    assert (problems[0].location.line, problems[0].location.column) == (6, 1)
    assert f"more than {MAX_ALIAS_NODES:,} values" in problems[0].message


def test_anchors_reused_within_the_budget_load_as_written() -> None:
    shared = (
        "limits: &limits {frequency_cap: {max: 3, per: 7d}, quiet_hours: {start: '21:00', end: '08:00'}}\n"
    )
    uses = "".join(f"use{n}: *limits\n" for n in range(200))
    document, problems = parse_yaml(shared + uses, Path("reuse.yaml"))

    assert problems == []
    assert document is not None
    assert document.data["use199"] == {
        "frequency_cap": {"max": 3, "per": "7d"},
        "quiet_hours": {"start": "21:00", "end": "08:00"},
    }


def test_a_bomb_through_a_merge_key_is_refused_at_the_merge() -> None:
    # Four levels copy 8,289 values through aliases (under the budget); merging *d once more crosses it.
    text = "\n".join(BOMB_LINES[:4]) + "\nmerged:\n  <<: {copy: *d}\n  extra: 1\n"
    within, _ = parse_yaml("\n".join(BOMB_LINES[:4]), Path("four.yaml"))
    document, problems = parse_yaml(text, Path("merge.yaml"))

    assert within is not None
    assert document is None
    assert problems[0].location.line == 6 and "values" in problems[0].message


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("w", encoding="utf-8") as handle:
        handle.write("name: Huge\n")
        handle.write(("# padding " + "x" * 100 + "\n") * (MAX_FILE_BYTES // 100))

    campaign, problems = load_campaign_file(path)

    assert campaign is None
    [problem] = problems
    assert (problem.location.line, problem.location.column) == (1, 1)
    assert "at most 1.0 MiB" in problem.message and "the file is 1.1 MiB" in problem.message


@pytest.mark.parametrize("scalar", ["+_", "-_", "0x_", "0o_", "0b_"])
def test_integer_forms_without_digits_are_text_not_a_library_crash(tmp_path: Path, scalar: str) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(
        f"name: {scalar}\ntrigger: {{at: 2026-12-14T10:00}}\nsteps:\n  - post: {{channel: x, template: t}}\n",
        encoding="utf-8",
    )

    campaign, problems = load_campaign_file(path)

    assert problems == [] and campaign is not None
    assert campaign.name == scalar


def test_a_bomb_in_sample_yaml_is_a_render_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "sample.yaml"
    path.write_text("contact: {id: 1, email: ada@example.com}\n" + bomb(), encoding="utf-8")

    with pytest.raises(RenderError) as caught:
        load_sample(path, Settings())

    assert (caught.value.path, caught.value.line) == (path, 6)
    assert caught.value.reason.startswith("sample: aliases here expand")


def test_a_bomb_in_front_matter_is_a_render_error_at_the_template_line(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "shop")
    template = workspace / "templates" / "shipping-reminder" / "email.mjml"
    body = template.read_text(encoding="utf-8").split("---\n", 2)[2]
    template.write_text('---\nsubject: "Hi"\n' + bomb() + "---\n" + body, encoding="utf-8")
    renderer = Renderer(Settings(), workspace / "templates")

    with pytest.raises(RenderError) as caught:
        renderer.compile_email("shipping-reminder")

    # Front matter line 1 is the file's line 2; the bomb's l5 is the front matter's line 6.
    assert (caught.value.path, caught.value.line) == (template, 7)
    assert "front matter: aliases here expand" in caught.value.reason


def test_a_bomb_in_segments_and_schedules_is_reported_where_it_is(tmp_path: Path) -> None:
    workspace = make_workspace(tmp_path / "shop")
    (workspace / "campaigns" / "segments.yaml").write_text("segments: {}\n" + bomb(), encoding="utf-8")
    (workspace / "schedules" / "laughs.yaml").write_text("dates: {}\n" + bomb(), encoding="utf-8")

    result = load_workspace(workspace)

    found = {(Path(p.location.path).name, p.location.line) for p in result.errors if "values" in p.message}
    assert found == {("segments.yaml", 6), ("laughs.yaml", 6)}
