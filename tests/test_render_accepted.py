"""The templates a daemon sends from move forward only to versions that render.

Each test loads a real workspace from disk, reviews it, edits files as a marketer would and
reviews again; what the renderer then reads from the accepted copy is what gets sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from render_support import context, settings_for
from workspace_support import EMAIL, make_workspace

from engine.render import Renderer
from engine.render.accepted import AcceptedTemplates
from engine.workspace.loader import Workspace, load_workspace

NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "shop")
    (root / "templates" / "_partials").mkdir()
    (root / "templates" / "_partials" / "sign.mjml").write_text("<mj-text>The shop team</mj-text>\n")
    for name in ("shipping-reminder", "holiday-greeting"):
        email = root / "templates" / name / "email.mjml"
        include = '<mj-include path="../_partials/sign.mjml" /></mj-column>'
        email.write_text(EMAIL.replace("</mj-column>", include))
    return root


@pytest.fixture
def accepted(root: Path) -> Iterator[AcceptedTemplates]:
    templates = AcceptedTemplates(settings_for(root))
    yield templates
    templates.close()


def workspace(root: Path) -> Workspace:
    result = load_workspace(root)
    assert result.ok, result.errors
    return result.workspace


def sent_html(accepted: AcceptedTemplates, template: str) -> str:
    assert accepted.directory is not None
    renderer = Renderer(accepted.settings, accepted.directory)
    return renderer.render_email(template, context(renderer.settings), marketing=True).html


def edit(root: Path, template: str, old: str, new: str) -> Path:
    path = root / "templates" / template / "email.mjml"
    path.write_text(path.read_text().replace(old, new))
    return path


def test_a_template_edit_that_renders_is_accepted(root: Path, accepted: AcceptedTemplates) -> None:
    accepted.review(workspace(root))
    edit(root, "shipping-reminder", "order by Friday", "order by Thursday")

    review = accepted.review(workspace(root))

    assert review.checked == ["shipping-reminder"] and review.lines() == []
    assert "order by Thursday" in sent_html(accepted, "shipping-reminder")


def test_a_template_over_the_budget_keeps_its_last_good_version_and_says_why(
    root: Path, accepted: AcceptedTemplates
) -> None:
    accepted.review(workspace(root))
    path = edit(root, "shipping-reminder", "order by Friday", "order by Friday " + NESTED_LOOPS)
    edit(root, "holiday-greeting", "order by Friday", "order by Monday")

    review = accepted.review(workspace(root))

    [line] = review.lines()
    assert line.startswith(f"kept the last good version of template 'shipping-reminder': {path}:8: ")
    assert "loop iterations" in line
    assert "order by Friday for delivery" in sent_html(accepted, "shipping-reminder")
    assert "order by Monday" in sent_html(accepted, "holiday-greeting")


def test_a_fixed_template_is_accepted_on_the_next_review(root: Path, accepted: AcceptedTemplates) -> None:
    accepted.review(workspace(root))
    edit(root, "shipping-reminder", "order by Friday", NESTED_LOOPS)
    accepted.review(workspace(root))
    edit(root, "shipping-reminder", NESTED_LOOPS, "order by Saturday")

    review = accepted.review(workspace(root))

    assert review.lines() == []
    assert "order by Saturday" in sent_html(accepted, "shipping-reminder")


def test_a_shared_partial_that_breaks_templates_keeps_the_last_good_partial(
    root: Path, accepted: AcceptedTemplates
) -> None:
    accepted.review(workspace(root))
    (root / "templates" / "_partials" / "sign.mjml").write_text("<mj-text>{{ 'x' * 10**9 }}</mj-text>\n")
    edit(root, "holiday-greeting", "order by Friday", "order by Monday")

    review = accepted.review(workspace(root))

    assert review.shared is not None and "sign.mjml:1: " in review.shared
    assert "The shop team" in sent_html(accepted, "shipping-reminder")
    # The template's own edit still renders with the last good partial: it moves on.
    assert "order by Monday" in sent_html(accepted, "holiday-greeting")


def test_a_new_template_that_fails_is_reported_and_left_as_it_is(
    root: Path, accepted: AcceptedTemplates
) -> None:
    accepted.review(workspace(root))
    (root / "templates" / "fresh").mkdir()
    (root / "templates" / "fresh" / "email.mjml").write_text(EMAIL.replace("Friday", "{{ 9 ** 99999 }}"))

    review = accepted.review(workspace(root))

    [line] = review.lines()
    assert line.startswith("template 'fresh' has no version that renders") and "digits" in line


def test_the_first_review_checks_every_template(root: Path, accepted: AcceptedTemplates) -> None:
    review = accepted.review(workspace(root))

    everything = ["holiday-greeting", "holiday-greeting-b", "shipping-countdown", "shipping-reminder"]
    assert review.checked == everything
    assert review.lines() == []


def test_an_unknown_filter_keeps_the_last_good_version_at_its_line_instead_of_stopping_the_review(
    root: Path, accepted: AcceptedTemplates
) -> None:
    accepted.review(workspace(root))
    path = edit(root, "shipping-reminder", "order by Friday", "order by {{ contact.first_name | shout }}")

    review = accepted.review(workspace(root))

    [line] = review.lines()
    assert line.startswith(f"kept the last good version of template 'shipping-reminder': {path}:8: ")
    assert "No filter named 'shout'" in line
    assert "order by Friday" in sent_html(accepted, "shipping-reminder")
