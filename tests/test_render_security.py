"""Templates are user content and contact data is hostile until proven otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import context, email_file, section, settings_for, templates_dir

from engine.render import Record, Renderer, RenderError


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return templates_dir(tmp_path)


def _contact(first_name: str) -> Record:
    return Record(
        {
            "id": 7,
            "email": "x@example.com",
            "first_name": first_name,
            "name": first_name,
            "locale": None,
            "timezone": "UTC",
        }
    )


def test_contact_data_with_jinja_syntax_renders_as_text(folder: Path) -> None:
    email_file(folder, "hello", section("Hi {{ contact.first_name }}"))
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email("hello", context(renderer.settings, contact=_contact("{{ 7*7 }}")))
    assert "Hi {{ 7*7 }}" in message.html
    assert "Hi {{ 7*7 }}" in message.text
    assert "49" not in message.subject


def test_contact_data_with_html_is_escaped_in_html_but_plain_in_text(folder: Path) -> None:
    email_file(folder, "hello", section("Hi {{ contact.first_name }}"))
    renderer = Renderer(settings_for(folder.parent), folder)
    message = renderer.render_email(
        "hello", context(renderer.settings, contact=_contact("<script>alert(1)</script>"))
    )
    assert "<script>" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "Hi <script>alert(1)</script>" in message.text
    assert message.subject == "Hello <script>alert(1)</script>"


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ self._TemplateReference__context }}",
        "{{ '{0.__class__.__mro__}'.format(contact) }}",
        "{{ contact.__dict__ }}",
        "{{ contact.tags.append(1) }}",
        "{{ namespace.__init__.__globals__ }}",
    ],
)
def test_sandbox_escapes_are_blocked(folder: Path, attack: str) -> None:
    email_file(folder, "evil", section(attack))
    renderer = Renderer(settings_for(folder.parent), folder)
    with pytest.raises(RenderError) as caught:
        renderer.render_email("evil", context(renderer.settings), marketing=False)
    assert "evil/email.mjml" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_undefined_name_is_an_error_at_its_line(folder: Path) -> None:
    path = email_file(folder, "typo", section("Hi {{ contact.first_name }}") + section("{{ cupon.code }}"))
    renderer = Renderer(settings_for(folder.parent), folder)
    with pytest.raises(RenderError) as caught:
        renderer.render_email("typo", context(renderer.settings))
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "cupon" in text)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert "'cupon' is undefined" in str(caught.value)


def test_absent_optional_names_are_none_so_templates_can_test_them(folder: Path) -> None:
    email_file(
        folder, "maybe", section("{% if coupon %}Code {{ coupon.code }}{% else %}No coupon{% endif %}")
    )
    renderer = Renderer(settings_for(folder.parent), folder)
    assert "No coupon" in renderer.render_email("maybe", context(renderer.settings)).text


def test_jinja_syntax_error_points_at_the_file_line_after_front_matter(folder: Path) -> None:
    path = email_file(folder, "broken", section("{% if contact.first_name %}Hi"))
    renderer = Renderer(settings_for(folder.parent), folder)
    with pytest.raises(RenderError) as caught:
        renderer.compile_email("broken")
    assert str(caught.value).startswith(f"{path}:")
    assert "Jinja syntax error" in str(caught.value)
    line = int(str(caught.value)[len(str(path)) + 1 :].split(":", 1)[0])
    assert line > 3  # past the front matter, at the unclosed tag's end of file
