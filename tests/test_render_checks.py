"""validate's template checks: each one fires on a template broken in that one way."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import email_file, section, settings_for, templates_dir, write

from engine.errors import Problem
from engine.render.checks import check_workspace
from engine.workspace.loader import load_workspace

SAMPLE = """\
now: 2026-12-11T09:00:00+02:00
contact: {id: 5, email: ana@example.com, first_name: Ana, locale: ro, timezone: Europe/Bucharest}
"""


def _check(root: Path) -> list[Problem]:
    result = load_workspace(root)
    assert not result.errors, [str(p) for p in result.errors]
    return check_workspace(result.workspace, settings_for(root))


def _template(root: Path, name: str, body: str, *, sample: str = SAMPLE) -> Path:
    folder = templates_dir(root)
    path = email_file(folder, name, body)
    write(folder / name / "sample.yaml", sample)
    return path


def _messages(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


def test_a_clean_template_has_no_problems(tmp_path: Path) -> None:
    _template(
        tmp_path,
        "fine",
        section('Hi {{ contact.first_name }}, <a href="https://shop.example.com/x">shop</a>'),
    )
    assert _messages(_check(tmp_path)) == []


def test_undefined_name_in_a_template_is_reported_at_its_line(tmp_path: Path) -> None:
    path = _template(tmp_path, "typo", section("Hi {{ contact.frist_name }}"))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "frist_name" in text)
    assert any(m.startswith(f"{path}:{line}:") and "frist_name" in m for m in _messages(_check(tmp_path)))


def test_mjml_error_is_reported_once_at_its_line(tmp_path: Path) -> None:
    path = _template(
        tmp_path, "broken", "<mj-section><mj-column><mj-text>unclosed</mj-column></mj-section>\n"
    )
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "unclosed" in text)
    # MJML's rules find it before MRML does; the render (MRML's "MJML error") would only repeat it.
    assert _messages(_check(tmp_path)) == [
        f"{path}:{line}:1: <mj-text> is never closed (</mj-column> comes first)"
    ]


def _sending_campaign(root: Path, name: str, template: str, category: str) -> Path:
    audience = "audience:\n  where:\n    - consent: email\n" if category == "marketing" else ""
    return write(
        root / "campaigns" / f"{name}.yaml",
        f"name: {name}\nstatus: active\ncategory: {category}\n{audience}"
        + ("trigger:\n  at: 2027-01-04T10:00\n" if audience else "trigger:\n  event: {type: order.placed}\n")
        + f"steps:\n  - id: {name}\n    send: {{channel: email, template: {template}}}\n",
    )


def _bare(root: Path) -> None:
    """A template without an unsubscribe link: written as a service message."""
    folder = root / "templates"
    write(
        folder / "bare" / "email.mjml",
        "---\nsubject: Hi\n---\n<mjml><mj-body>"
        + section("{{ shop.postal_address }}")
        + "</mj-body></mjml>\n",
    )
    write(folder / "bare" / "sample.yaml", SAMPLE)


def test_marketing_template_without_unsubscribe_link_is_reported(tmp_path: Path) -> None:
    _bare(tmp_path)
    campaign = _sending_campaign(tmp_path, "news", "bare", "marketing")
    messages = _messages(_check(tmp_path))
    assert any("does not show the unsubscribe link" in m for m in messages)
    step_line = campaign.read_text().splitlines().index("  - id: news") + 1
    assert any(
        m.startswith(f"{campaign}:{step_line}:") and "written as a service message" in m for m in messages
    )


def test_a_template_no_campaign_sends_is_checked_as_it_is_written(tmp_path: Path) -> None:
    _bare(tmp_path)
    assert _messages(_check(tmp_path)) == []  # a service message needs no unsubscribe link
    templates_dir(tmp_path)
    _template(tmp_path, "news", section("Hi"))  # the layout's footer has the link: marketing
    write(tmp_path / "templates" / "_partials" / "footer.mjml", section("{{ unsubscribe_url }}"))
    assert any("postal address" in m for m in _messages(_check(tmp_path)))


def test_a_transactional_campaign_sending_the_marketing_footer_is_warned(tmp_path: Path) -> None:
    _template(tmp_path, "receipt", section("Thank you"))
    campaign = _sending_campaign(tmp_path, "receipts", "receipt", "transactional")
    problems = [p for p in _check(tmp_path) if str(p.location.path) == str(campaign)]
    assert [p.severity for p in problems] == ["warning"]
    assert "marketing footer" in problems[0].message and "_layouts/service.mjml" in problems[0].message


def test_marketing_template_without_postal_address_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    write(
        folder / "bare" / "email.mjml",
        "---\nsubject: Hi\n---\n<mjml><mj-body>"
        + section('<a href="{{ unsubscribe_url }}">Unsubscribe</a>')
        + "</mj-body></mjml>\n",
    )
    write(folder / "bare" / "sample.yaml", SAMPLE)
    assert any("postal address" in m for m in _messages(_check(tmp_path)))


def test_image_without_alt_is_reported_at_the_image_line(tmp_path: Path) -> None:
    path = _template(
        tmp_path,
        "img",
        '<mj-section><mj-column><mj-image src="https://shop.example.com/hero.jpg" />'
        "</mj-column></mj-section>\n",
    )
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "hero.jpg" in text)
    found = [m for m in _messages(_check(tmp_path)) if "has no alt text" in m]
    assert found and found[0].startswith(f"{path}:{line}:")


@pytest.mark.parametrize(
    ("href", "why"),
    [
        ("javascript:alert(1)", "not an http(s), mailto or tel link"),
        ("https://", "no valid host"),
        ("https://shop.example.com/a b", "contains spaces"),
        ("mailto:nobody", "not an email address"),
    ],
)
def test_bad_links_are_reported(tmp_path: Path, href: str, why: str) -> None:
    _template(tmp_path, "links", section(f'<a href="{href}">here</a>'))
    assert any(why in m for m in _messages(_check(tmp_path)))


def test_html_over_gmails_clip_size_is_reported(tmp_path: Path) -> None:
    _template(tmp_path, "huge", section("Lorem ipsum dolor sit amet. " * 4000))
    assert any("Gmail clips" in m for m in _messages(_check(tmp_path)))


def test_x_post_over_280_weighted_characters_is_reported(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    write(folder / "long-post" / "post.txt", "Holiday news! " + "🎄" * 140 + "\n")
    write(folder / "long-post" / "sample.yaml", "now: 2026-12-11T09:00:00+02:00\n")
    assert any("weighted characters, over X's 280" in m for m in _messages(_check(tmp_path)))


def test_template_falling_back_to_per_message_compilation_is_a_warning(tmp_path: Path) -> None:
    _template(
        tmp_path,
        "wide",
        '<mj-section><mj-column><mj-image alt="a" src="https://shop.example.com/a.png" '
        'width="{{ 300 }}px" /></mj-column></mj-section>\n',
    )
    problems = [p for p in _check(tmp_path) if "per message" in p.message]
    assert problems and problems[0].severity == "warning"


def _campaign(root: Path, name: str, text: str) -> Path:
    return write(root / "campaigns" / f"{name}.yaml", text)


def test_template_using_coupon_before_any_coupon_step_is_an_error_at_the_step(tmp_path: Path) -> None:
    _template(tmp_path, "apology", section("{% if coupon %}{{ coupon.code }}{% endif %}"))
    path = _campaign(
        tmp_path,
        "sorry",
        """\
        name: Sorry
        audience: {where: [{consent: email}]}
        trigger: {at: 2027-01-05T10:00}
        steps:
          - id: apology
            send: {channel: email, template: apology}
          - coupon: {id: apology, percent: 15, expires_in: 30d, prefix: SORRY}
        """,
    )
    found = [m for m in _messages(_check(tmp_path)) if "uses coupon" in m]
    assert found == [
        f"{path}:5:5: template 'apology' uses coupon, but no coupon step comes before step 'apology'"
    ]


def test_coupon_step_before_the_send_is_fine(tmp_path: Path) -> None:
    _template(tmp_path, "apology", section("{% if coupon %}{{ coupon.code }}{% endif %}"))
    _campaign(
        tmp_path,
        "sorry",
        """\
        name: Sorry
        audience: {where: [{consent: email}]}
        trigger: {at: 2027-01-05T10:00}
        steps:
          - coupon: {id: apology, percent: 15, expires_in: 30d, prefix: SORRY}
          - send: {channel: email, template: apology}
        """,
    )
    assert not [m for m in _messages(_check(tmp_path)) if "uses coupon" in m]


def test_template_using_event_from_a_campaign_without_event_trigger_is_an_error(tmp_path: Path) -> None:
    _template(tmp_path, "welcome", section("{% if event %}{{ event.type }}{% endif %}"))
    path = _campaign(
        tmp_path,
        "weekly",
        """\
        name: Weekly
        audience: {where: [{consent: email}]}
        trigger: {schedule: {cron: "0 10 * * MON"}}
        steps:
          - send: {channel: email, template: welcome}
        """,
    )
    found = [m for m in _messages(_check(tmp_path)) if "uses event" in m]
    assert found == [f"{path}:5:5: template 'welcome' uses event, but campaign 'weekly' has no event trigger"]
