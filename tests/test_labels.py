"""Labels: the shop's codes in the reader's words, checked by the loader and shown by the `label` filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import NOW, email_file, section, settings_for, templates_dir, write
from workspace_support import make_workspace

from engine.render import Record, Renderer, RenderError, build_context
from engine.workspace.loader import load_workspace

LABELS = """\
labels:
  problem:
    damaged:
      en: it arrived damaged
      ro: a ajuns deteriorată
      et: see saabus kahjustatuna
    late:
      en: it arrived late
"""


def _workspace(tmp_path: Path, labels: str = LABELS) -> Path:
    root = make_workspace(tmp_path / "shop")
    for locale in ("ro", "et"):
        (root / "templates" / "holiday-greeting" / f"email.{locale}.mjml").write_text(
            (root / "templates" / "holiday-greeting" / "email.mjml").read_text()
        )
    (root / "schedules" / "labels.yaml").write_text(labels)
    return root


def test_labels_load_from_any_schedule_file_and_a_missing_language_is_a_warning(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    result = load_workspace(root)
    assert result.errors == []
    labels = result.workspace.schedules.labels
    assert labels.text("problem", "damaged", "ro", "en") == "a ajuns deteriorată"
    [warning] = result.problems
    path = root / "schedules" / "labels.yaml"
    assert warning.severity == "warning"
    assert str(warning).startswith(f"{path}:7:")  # the line of `late:`
    assert "label problem.late has no et, ro text" in warning.message


def test_a_code_labelled_twice_across_files_is_an_error_at_the_second(tmp_path: Path) -> None:
    root = _workspace(tmp_path)
    (root / "schedules" / "more.yaml").write_text(
        "labels:\n  problem:\n    Damaged: {en: broken, ro: stricat, et: katki}\n"
    )
    errors = load_workspace(root).errors
    assert [str(e).split(": ", 1)[0] for e in errors] == [f"{root / 'schedules' / 'more.yaml'}:3:5"]
    assert "label problem.Damaged is already defined in" in errors[0].message


def test_a_malformed_label_is_an_error_at_its_line(tmp_path: Path) -> None:
    root = _workspace(tmp_path, "labels:\n  problem:\n    damaged:\n      english: arrived damaged\n")
    [error] = load_workspace(root).errors
    assert str(error).startswith(f"{root / 'schedules' / 'labels.yaml'}:4:")


def _render(tmp_path: Path, body: str, locale: str, **context: object) -> str:
    root = tmp_path / "ws"
    write(root / "schedules" / "labels.yaml", LABELS)
    folder = templates_dir(root)
    email_file(folder, "t", section(body))
    if locale != "en":
        email_file(folder, "t", section(body), locale=locale)
    renderer = Renderer(settings_for(root), folder)
    contact = {"id": 7, "email": "a@example.com", "first_name": "Ana", "locale": locale}
    ctx = build_context(renderer.settings, contact=contact, now=NOW, **context)  # type: ignore[arg-type]
    return renderer.render_email("t", ctx, locale=locale).text


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("ro", "a ajuns deteriorată"), ("et", "see saabus kahjustatuna"), ("en", "it arrived damaged")],
)
def test_a_code_shows_in_the_language_of_the_email(tmp_path: Path, locale: str, expected: str) -> None:
    text = _render(
        tmp_path, "P={{ order.problem|label('problem') }}", locale, order=Record({"problem": "DAMAGED"})
    )
    assert f"P={expected}" in text and "DAMAGED" not in text


def test_a_label_missing_a_language_falls_back_to_the_default_and_an_unknown_code_shows_as_sent(
    tmp_path: Path,
) -> None:
    body = "A={{ order.problem|label('problem') }} B={{ order.status|label('problem') }}"
    text = _render(tmp_path, body, "ro", order=Record({"problem": "late", "status": "parcel was wet"}))
    assert "A=it arrived late" in text and "B=parcel was wet" in text


def test_a_misspelt_kind_is_a_render_error_naming_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(
        RenderError, match=r"no labels of kind 'problm' in schedules/ \(kinds defined: problem\)"
    ):
        _render(tmp_path, "{{ order.problem|label('problm') }}", "en", order=Record({"problem": "late"}))


def test_labels_reload_with_the_templates(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    path = write(root / "schedules" / "labels.yaml", LABELS)
    folder = templates_dir(root)
    email_file(folder, "t", section("P={{ order.problem|label('problem') }}"))
    renderer = Renderer(settings_for(root), folder)
    ctx = build_context(
        renderer.settings,
        contact={"id": 7, "email": "a@example.com", "first_name": "Ana"},
        now=NOW,
        order=Record({"problem": "late"}),
    )
    assert "P=it arrived late" in renderer.render_email("t", ctx).text
    path.write_text(LABELS.replace("it arrived late", "it came after Christmas"))
    renderer.invalidate(path)
    assert "P=it came after Christmas" in renderer.render_email("t", ctx).text
