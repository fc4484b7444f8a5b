"""``validate`` catches, at the line to fix, what a marketer writes wrong (issue "Catch it while writing").

Each test is one case a marketer new to Tidings ran into, on a copy of the shipped workspace:
what used to pass ``validate`` and fail (or surprise) at send time is now a problem with its
file, line and a message that says what to do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from validate_support import edit, line_of, shipped, validate

from engine.render import Renderer, load_sample, sample_context
from engine.settings import Settings


def test_a_decimal_times_float_flow_condition_is_caught_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    campaign = root / "campaigns" / "gift-card-follow-up.yaml"
    condition = "order and gift_card and order.total >= gift_card.amount * 1.15"
    edit(campaign, '"gift_card and gift_card.balance > 0"', f'"{condition}"')

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(campaign, condition)
    assert f"{campaign}:{line}:9: expression '{condition}' fails" in err
    assert "unsupported operand type(s) for *: 'decimal.Decimal' and 'float'" in err
    assert "'gift_card.amount * 115 / 100', not '* 1.15'" in err


def test_the_same_condition_written_as_a_division_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    campaign = root / "campaigns" / "gift-card-follow-up.yaml"
    edit(
        campaign,
        '"gift_card and gift_card.balance > 0"',
        '"order and gift_card and order.total >= gift_card.amount * 115 / 100"',
    )

    code, err, out = validate(root, capsys)

    assert (code, err) == (0, ""), err
    assert "no problems" in out


def test_deleting_one_variants_locale_file_is_a_problem_naming_the_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "holiday-greetings")
    missing = root / "templates" / "holiday-greeting-b" / "email.et.mjml"
    missing.unlink()

    code, err, _ = validate(root, capsys)

    assert code == 1
    campaign = root / "campaigns" / "holiday-greetings.yaml"
    line = line_of(campaign, "template: holiday-greeting-b")
    assert f"{campaign}:{line}:" in err
    assert f"A/B variants cover different locales: {missing} is missing" in err
    assert "Estonian contacts in variant 'holiday-greeting-b' get its default file" in err


def test_a_misspelt_mjml_tag_is_a_problem_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.mjml"
    edit(template, "<mj-button href", "<mj-buton href")
    edit(template, "</mj-button>", "</mj-buton>")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(template, "<mj-buton")
    assert f"{template}:{line}:1: unknown MJML tag <mj-buton>; did you mean <mj-button>?" in err
    assert err.count("mj-buton") == 1  # its closing tag is not a second problem


def test_a_misspelt_closing_tag_is_one_problem_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.ro.mjml"
    edit(template, "</mj-column>", "</mj-colum>")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(template, "</mj-colum>")
    opened = line_of(template, "<mj-column>")
    assert (
        f"{template}:{line}:1: closing tag </mj-colum> matches no open tag; did you mean </mj-column>? "
        f"(the open tag is <mj-column>, line {opened})"
    ) in err
    assert len(err.strip().splitlines()) == 1, err


def test_an_attribute_mjml_does_not_know_and_a_misplaced_column_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.et.mjml"
    edit(template, '<mj-text mj-class="h1">', '<mj-text mj-class="h1" colour="#7a2e1f">')
    edit(template, "<mj-column>", "<mj-column><mj-column>")
    edit(template, "</mj-column>", "</mj-column></mj-column>")

    code, err, _ = validate(root, capsys)

    assert code == 1
    text_line = line_of(template, "colour=")
    column_line = line_of(template, "<mj-column><mj-column>")
    assert f"{template}:{text_line}:1: <mj-text> has no attribute 'colour'; did you mean 'color'?" in err
    assert (
        f"{template}:{column_line}:1: <mj-column> cannot be used inside <mj-column>, only inside: "
        "mj-group, mj-section"
    ) in err


def test_an_mjml_tag_inside_text_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.mjml"
    edit(template, "Warmly,<br />", '<mj-button href="https://example.com">Shop</mj-button>Warmly,<br />')

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(template, "Warmly,")
    assert f"{template}:{line}:1: <mj-button> inside <mj-text>: the content of <mj-text> is HTML" in err


def test_a_broken_link_and_a_plain_http_link_in_marketing_mail_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.mjml"
    edit(template, 'href="{{ shop.url }}/collections/under-50"', 'href="htp:/broken link"')
    other = root / "templates" / "gift-card-ideas" / "email.ro.mjml"
    edit(other, 'href="{{ shop.url }}/collections/under-50"', 'href="http://example.com/sale"')

    code, err, _ = validate(root, capsys)

    assert code == 1
    assert f"{template}:{line_of(template, 'htp:/broken')}:1: link 'htp:/broken link' contains spaces" in err
    assert (
        f"{other}:{line_of(other, 'http://example.com')}:1: link 'http://example.com/sale?utm_source=tidings"
    ) in err
    assert "is plain http: marketing mail links to https pages only" in err


def test_a_romanian_default_file_warns_for_contacts_of_other_languages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "january-win-back")
    folder = root / "templates" / "win-back"
    romanian = (folder / "email.ro.mjml").read_text(encoding="utf-8")
    for path in folder.glob("email*.mjml"):
        path.unlink()
    (folder / "email.mjml").write_text(romanian.replace("---\n", "---\nlocale: ro\n", 1), encoding="utf-8")

    code, err, _ = validate(root, capsys)

    assert code == 0, err  # a warning: Estonians get Romanian, but something is sent
    campaign = root / "campaigns" / "january-win-back.yaml"
    line = line_of(campaign, "template: win-back")
    assert f"{campaign}:{line}:" in err
    assert (
        f"warning: contacts with locale et get {folder / 'email.mjml'} (the default file), which is "
        "written in Romanian; add email.et.mjml or force the campaign's language with 'locale:'"
    ) in err
    # Declared Romanian, it is formatted in Romanian with the Romanian footer, whoever reads it.
    settings = Settings(workspace=root, secret_key="k" * 40)
    renderer = Renderer(settings, root / "templates")
    sample = load_sample(folder / "sample.yaml", settings)
    estonian = {**sample, "contact": {**sample["contact"], "locale": "et"}}
    message = renderer.render_email("win-back", sample_context(estonian, settings), locale="et")
    assert message.locale == "ro" and 'lang="ro"' in message.html


def test_an_undeclared_default_file_naming_romanian_months_gets_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "january-win-back")
    folder = root / "templates" / "win-back"
    romanian = (folder / "email.ro.mjml").read_text(encoding="utf-8")
    for path in folder.glob("email*.mjml"):
        path.unlink()
    (folder / "email.mjml").write_text(
        romanian.replace("<mj-column>", "<mj-column><mj-text>Reduceri până luni, 25 ianuarie.</mj-text>", 1),
        encoding="utf-8",
    )

    _code, err, _ = validate(root, capsys)

    assert (
        f"warning: {folder / 'email.mjml'} looks written in Romanian (it names ianuarie, luni) but, as "
        "the default file, is formatted in English (dates, money, footer): declare 'locale: ro' in its "
        "front matter"
    ) in err


def test_a_forced_locale_without_its_file_is_a_problem_at_the_locale_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "january-win-back")
    campaign = root / "campaigns" / "january-win-back.yaml"
    edit(campaign, "status: active\n", "status: active\nlocale: de\n")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(campaign, "locale: de")
    assert (
        f"{campaign}:{line}:9: locale de is forced, but template 'win-back' has no email.de.mjml: it would "
        "send email.mjml, written in English"
    ) in err


def test_one_bad_date_in_schedules_is_one_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = shipped(tmp_path)
    schedule = root / "schedules" / "season-2026.yaml"
    edit(schedule, "christmas: 12-25", "christmas: 12-32")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(schedule, "christmas: 12-32")
    assert err.strip().splitlines() == [
        f"{schedule}:{line}:14: dates.christmas: expected a date YYYY-MM-DD or a yearly MM-DD (e.g. 12-25), "
        "got '12-32'"
    ]


def test_a_typo_in_segments_is_reported_there_and_nowhere_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path)
    segments = root / "campaigns" / "segments.yaml"
    edit(segments, "  promotable:\n", "  promotable:\n    descripton: typo\n")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(segments, "descripton")
    assert err.strip().splitlines() == [
        f"{segments}:{line}:5: unknown key 'descripton' in segments.promotable; did you mean 'description'? "
        "(expected one of: description, where)"
    ]


def test_a_yaml_indentation_mistake_is_explained_in_tidings_words_at_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "holiday-greetings")
    campaign = root / "campaigns" / "holiday-greetings.yaml"
    edit(campaign, "  quiet_hours:", "   quiet_hours:")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(campaign, "   quiet_hours:")
    assert err.strip().splitlines() == [
        f"{campaign}:{line}:1: YAML syntax error: this line's indentation (3 spaces) does not fit the lines "
        f"above (line {line - 1} has 2); the items of one list, and the keys of one mapping, start in the "
        "same column"
    ]


def test_a_key_without_a_colon_is_reported_at_its_own_line_not_the_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "holiday-greetings")
    campaign = root / "campaigns" / "holiday-greetings.yaml"
    edit(campaign, "category: marketing", "category marketing")

    _code, err, _ = validate(root, capsys)

    line = line_of(campaign, "category marketing")
    expected = "YAML syntax error: this line has no ':' after its key; write key: value"
    assert f"{campaign}:{line}:1: {expected}" in err


def test_a_misspelt_contact_attribute_gets_a_did_you_mean_in_templates_and_expressions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-follow-up")
    template = root / "templates" / "gift-card-ideas" / "email.et.mjml"
    edit(template, "{{ contact.first_name }}", "{{ contact.frist_name }}")
    campaign = root / "campaigns" / "gift-card-follow-up.yaml"
    edit(campaign, '"gift_card and gift_card.balance > 0"', '"gift_card and gift_card.balanse > 0"')

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(template, "contact.frist_name")
    assert f"{template}:{line}:1: contact.frist_name: contact has no attribute 'frist_name'; did you " in err
    assert "did you mean 'first_name'?" in err
    at = line_of(campaign, "balanse")
    assert (
        f"{campaign}:{at}:9: steps[1].if: expression 'gift_card and gift_card.balanse > 0': "
        "gift_card.balanse: gift_card has no attribute 'balanse'; did you mean 'balance'?"
    ) in err
    # The render does not say it again in other words.
    assert len([line for line in err.splitlines() if "frist_name" in line]) == 1, err


def test_a_set_tag_before_mjml_is_reported_at_the_template_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "january-win-back")
    template = root / "templates" / "win-back" / "email.mjml"
    template.write_text(
        '---\nsubject: "We miss you"\n---\n{% set greeting = "Hello" %}\n<mjml>\n  <mj-body>\n'
        "    <mj-section><mj-column><mj-text>{{ greeting }} {{ unsubscribe_url }} {{ shop.postal_address }}"
        "</mj-text></mj-column></mj-section>\n  </mj-body>\n</mjml>\n",
        encoding="utf-8",
    )

    code, err, _ = validate(root, capsys)

    assert code == 1
    assert "<template>" not in err
    assert (
        f'{template}:4:1: {{% set greeting = "Hello" %}} comes before <mjml>: an MJML document starts '
        "with <mjml>"
    ) in err


def test_an_unknown_key_and_a_wrong_value_in_a_sample_are_reported_at_their_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-welcome")
    sample = root / "templates" / "gift-card-welcome" / "sample.yaml"
    edit(sample, "campaign:", "giftcard: {balance: 10}\ncampaign:")
    edit(sample, "  orders_count: 0", "  orders_count: none yet")
    edit(sample, "  first_name: Andrei", "  frist_name: Andrei")

    code, err, _ = validate(root, capsys)

    assert code == 1
    at = line_of(sample, "giftcard")
    assert f"{sample}:{at}:1: unknown name 'giftcard'; did you mean 'gift_card'?" in err
    assert (
        f"{sample}:{line_of(sample, 'orders_count')}:17: contact.orders_count: expected a whole number, "
        "got 'none yet'"
    ) in err
    at = line_of(sample, "frist_name")
    assert f"{sample}:{at}:3: contact has no field 'frist_name'; did you mean 'first_name'?" in err
    assert len(err.strip().splitlines()) == 3, err  # the broken sample is not rendered: no cascade


def test_a_byte_order_mark_is_accepted_and_stripped_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "gift-card-welcome", "shipping-countdown")
    bom = "\ufeff"
    for path in (
        root / "templates" / "gift-card-welcome" / "email.mjml",
        root / "templates" / "gift-card-welcome" / "sample.yaml",
        root / "templates" / "shipping-countdown" / "post.txt",
        root / "templates" / "_partials" / "footer.mjml",
        root / "campaigns" / "gift-card-welcome.yaml",
    ):
        path.write_text(bom + path.read_text(encoding="utf-8"), encoding="utf-8")

    code, err, _ = validate(root, capsys)

    assert (code, err) == (0, ""), err
    settings = Settings(workspace=root, secret_key="k" * 40)
    renderer = Renderer(settings, root / "templates")
    sample = load_sample(root / "templates" / "shipping-countdown" / "sample.yaml", settings)
    post = renderer.render_post("shipping-countdown", sample_context(sample, settings))
    assert bom not in post.text
    welcome = load_sample(root / "templates" / "gift-card-welcome" / "sample.yaml", settings)
    message = renderer.render_email("gift-card-welcome", sample_context(welcome, settings), marketing=False)
    assert bom not in message.html and bom not in message.subject


def test_an_unknown_filter_is_reported_at_the_authors_line_not_the_layouts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = shipped(tmp_path, "holiday-greetings")
    template = root / "templates" / "holiday-greeting" / "email.mjml"
    edit(template, "Dear {{ contact.first_name }},", "Dear {{ contact.first_name | shout }},")

    code, err, _ = validate(root, capsys)

    assert code == 1
    line = line_of(template, "| shout")
    assert err.strip() == f"{template}:{line}:1: No filter named 'shout' found."
