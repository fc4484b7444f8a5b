"""A message renders in one pass (subject, preheader, HTML, text) and still renders exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import jinja2
import markupsafe
import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from render_support import SECRET, context, email_file, section, settings_for, templates_dir, write

from engine.render import Record, Renderer, RenderError
from engine.render.unsubscribe import UnsubscribeLinks
from engine.tokens import UnsubscribeTokens


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return templates_dir(tmp_path)


def _contact(first_name: str = "Maria", timezone: str = "Europe/Bucharest", contact_id: int = 7) -> Record:
    return Record(
        {
            "id": contact_id,
            "email": f"c{contact_id}@example.com",
            "first_name": first_name,
            "name": first_name,
            "locale": None,
            "timezone": timezone,
        }
    )


def _email(folder: Path, name: str, front: str, body: str) -> Path:
    return write(
        folder / name / "email.mjml",
        f'---\n{front}---\n{{% extends "_layouts/base.mjml" %}}\n'
        f"{{% block content %}}\n{body}{{% endblock %}}\n",
    )


def test_subject_written_over_several_lines_is_one_line_in_the_header_and_the_title(folder: Path) -> None:
    _email(folder, "hello", 'subject: "Hello\\n   {{ contact.first_name }},\\tsee this"\n', section("Hi"))
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("hello", context(renderer.settings))
    assert message.subject == "Hello Maria, see this"
    assert "<title>Hello Maria, see this</title>" in message.html
    assert message.preheader is None


def test_a_name_set_in_the_html_is_not_visible_in_the_text_part(folder: Path) -> None:
    _email(folder, "scoped", 'subject: "S"\n', section("{% set greeting = 'Hej' %}{{ greeting }} there"))
    write(folder / "scoped" / "email.txt", "{{ greeting }} there\n")
    renderer = Renderer(settings_for(folder.parent), folder)
    with pytest.raises(RenderError, match="'greeting' is undefined"):
        renderer.render_email("scoped", context(renderer.settings), marketing=False)


def test_the_text_part_sees_the_rendered_subject_and_preheader(folder: Path) -> None:
    _email(
        folder,
        "echo",
        'subject: "For {{ contact.first_name }}"\npreheader: "Only  today"\n',
        section("Hi"),
    )
    write(folder / "echo" / "email.txt", "{{ subject }} / {{ preheader }}\n")
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("echo", context(renderer.settings), marketing=False)
    assert message.text == "For Maria / Only today\n"


def test_comments_in_the_subject_and_the_text_part_render_as_jinja_renders_them(folder: Path) -> None:
    text = "Line one\n{#- dropped with the newlines -#}\nLine two {# note #}end\n{{ contact.first_name }}"
    _email(folder, "notes", 'subject: "Hi {# internal #}{{ contact.first_name }}"\n', section("Hi"))
    write(folder / "notes" / "email.txt", text)
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("notes", context(renderer.settings), marketing=False)
    expected = (
        jinja2.Environment(keep_trailing_newline=True)
        .from_string(text)
        .render(contact={"first_name": "Maria"})
    )
    assert message.text == expected.strip() + "\n"
    assert message.subject == "Hi Maria"


def test_contact_data_containing_the_part_separator_cannot_move_the_parts(folder: Path) -> None:
    email_file(folder, "hello", section("Hi {{ contact.first_name }}!"))
    renderer = Renderer(settings_for(folder.parent), folder)
    separator = renderer.compile_email("hello").separator
    inside = renderer.render_email("hello", context(renderer.settings, contact=_contact(f"x{separator}y")))
    assert inside.subject == f"Hello x {separator.strip()} y"  # \x1e is whitespace to a one-line subject
    assert f"Hi x{separator}y!" in inside.html and f"Hi x{separator}y!" in inside.text
    with pytest.raises(RenderError, match="reserved separator"):
        renderer.render_email("hello", context(renderer.settings, contact=_contact(separator)))


def test_contact_data_is_escaped_in_html_exactly_as_markupsafe_escapes_it(folder: Path) -> None:
    hostile = '<b>O\'Neil</b> & "Co" — Ștefan'
    email_file(folder, "hello", section("Hi {{ contact.first_name }}!"))
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("hello", context(renderer.settings, contact=_contact(hostile)))
    assert f"Hi {markupsafe.escape(hostile)}!" in message.html
    assert f"Hi {hostile}!" in message.text
    assert message.subject == f"Hello {hostile}"


def test_private_attributes_stay_blocked_on_records_and_their_values(folder: Path) -> None:
    for attack in ("{{ contact.__class__.__mro__ }}", "{{ shop.url.__class__ }}", "{{ contact._hidden }}"):
        email_file(folder, "evil", section(attack))
        renderer = Renderer(settings_for(folder.parent), folder)
        with pytest.raises(RenderError):
            renderer.render_email("evil", context(renderer.settings), marketing=False)


def test_the_same_moment_is_formatted_in_each_contacts_own_zone(folder: Path) -> None:
    email_file(
        folder,
        "when",
        section("By {{ cutoff.order_by|datetime('yyyy-MM-dd HH:mm') }} ({{ cutoff.order_by|date('d') }})"),
    )
    renderer = Renderer(settings_for(folder.parent), folder)
    cutoff = Record({"order_by": datetime(2026, 12, 19, 12, 0, tzinfo=UTC)})

    def shown(timezone: str) -> str:
        ctx = context(renderer.settings, contact=_contact(timezone=timezone), cutoff=cutoff)
        return renderer.render_email("when", ctx, marketing=False).text.splitlines()[0]

    assert shown("Europe/Tallinn") == "By 2026-12-19 14:00 (19)"
    assert shown("Pacific/Auckland") == "By 2026-12-20 01:00 (20)"
    assert shown("Europe/Tallinn") == "By 2026-12-19 14:00 (19)"


def test_days_until_counts_from_each_messages_own_now(folder: Path) -> None:
    email_file(folder, "left", section("{{ days_until(cutoff.order_by) }} days left"))
    renderer = Renderer(settings_for(folder.parent), folder)
    cutoff = Record({"order_by": datetime(2026, 12, 19, 12, 0, tzinfo=UTC)})

    def left(now: datetime) -> str:
        ctx = context(renderer.settings, cutoff=cutoff, now=now)
        return renderer.render_email("left", ctx, marketing=False).text.splitlines()[0]

    assert left(datetime(2026, 12, 12, 8, 0, tzinfo=UTC)) == "7 days left"
    assert left(datetime(2026, 12, 17, 8, 0, tzinfo=UTC)) == "2 days left"


def test_days_until_inside_a_loop_still_counts_in_the_messages_own_zone(folder: Path) -> None:
    # Inside a loop Jinja passes the loop's variables along, so the call takes the sandbox's
    # path; a loop variable named ``contact`` does not change whose zone the days count in.
    email_file(
        folder,
        "loop",
        section(
            "{% for contact in event.people %}{{ days_until(cutoff.order_by) }}{% endfor %}"
            " / {{ days_until(cutoff.order_by) }}"
        ),
    )
    renderer = Renderer(settings_for(folder.parent), folder)
    cutoff = Record({"order_by": datetime(2026, 12, 19, 12, 0, tzinfo=UTC)})
    event = Record({"type": "custom.test", "people": [{"timezone": "Pacific/Auckland"}]})
    now = datetime(2026, 12, 12, 10, 30, tzinfo=UTC)  # 23:30 on the 12th in Auckland, 02:30 in Los Angeles
    ctx = context(renderer.settings, cutoff=cutoff, event=event, now=now)
    ctx["contact"] = _contact(timezone="America/Los_Angeles")
    assert renderer.render_email("loop", ctx, marketing=False).text.splitlines()[0] == "7 / 7"


@pytest.mark.parametrize("campaign", [None, "", "holiday-greetings", 'quote " and ș'])
def test_unsubscribe_links_carry_the_reference_signers_tokens(campaign: str | None) -> None:
    links = UnsubscribeLinks(SECRET, "https://shop.example.com/")
    reference = UnsubscribeTokens(SECRET)
    assert links.fast
    for contact_id in (0, 7, 10_000, 2**40):
        url = links.url(contact_id, campaign)
        assert url == f"https://shop.example.com/u/{reference.sign(contact_id, 'email', campaign)}"
        claim = reference.verify(url.rsplit("/", 1)[1])
        assert (claim.contact_id, claim.campaign_id) == (contact_id, campaign or None)


def test_a_repeated_value_in_a_branch_not_taken_is_still_written_where_it_is_used(folder: Path) -> None:
    email_file(folder, "branch", section("{% if coupon %}{{ contact.first_name|upper }}{% endif %}Hi"))
    write(
        folder / "branch" / "email.txt", "{{ contact.first_name|upper }} and {{ contact.first_name|upper }}\n"
    )
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("branch", context(renderer.settings), marketing=False)
    assert message.text == "MARIA and MARIA\n"
    assert "MARIA" not in message.html


def test_generated_code_renders_exactly_as_jinjas_own(folder: Path) -> None:
    body = section(
        "{% set n = namespace(total=0) %}{% for tag in contact.tags %}{% set n.total = n.total + 1 %}"
        "{{ tag|title }} {{ contact.first_name }}{% endfor %}{{ n.total }}"
        "{% set who = contact.first_name or 'friend' %}{{ who }} {{ who }}"
        "{% with x = shop.name %}{{ x }}{% endwith %}{{ shop.name }} {{ shop.name|upper }}"
        "{{ contact.first_name if contact.first_name else 'there' }} {{ contact['last_name']|default('-') }}"
        "{{ contact.total_spent|money('EUR') }} {{ contact.orders_count|number }}"
        '<a href="{{ shop.url }}/x">{{ shop.url }}</a>{{ contact.first_name ~ "!" }}'
    )
    email_file(folder, "mixed", body)
    renderer = Renderer(settings_for(folder.parent), folder)
    contact = Record(
        {
            "id": 7,
            "email": "m@example.com",
            "first_name": "<Maria & Co>",
            "last_name": None,
            "name": "M",
            "locale": None,
            "timezone": "UTC",
            "tags": ["vip", "gift"],
            "total_spent": 12.5,
            "orders_count": 1234,
        }
    )
    ctx = context(renderer.settings, contact=contact)
    message = renderer.render_email("mixed", ctx, campaign_id="c", step_id="s")
    compiled = renderer.compile_email("mixed", None, "c", "s")
    own = compiled.html.environment
    stock = ImmutableSandboxedEnvironment(
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        comment_start_string=own.comment_start_string,
        comment_end_string=own.comment_end_string,
    )
    stock.filters.update(own.filters)
    stock.globals.update(own.globals)
    values = {**ctx, "unsubscribe_url": message.headers["List-Unsubscribe"][1:].split(">")[0]}
    expected = stock.from_string(compiled.html_source).render(values, subject=message.subject, preheader="")
    assert message.html == expected
    assert "&lt;Maria &amp; Co&gt; &lt;Maria &amp; Co&gt;" in message.html
