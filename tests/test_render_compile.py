"""Compile once: MJML → HTML once per template, locale and step; only Jinja renders per message."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import context, email_file, section, settings_for, templates_dir, write

from engine.render import Record, Renderer, RenderError
from engine.render.mjml import MjmlCompiler


def test_mjml_compiles_once_for_many_recipients(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "hello", section("Hi {{ contact.first_name }}"))
    mjml = MjmlCompiler()
    renderer = Renderer(settings_for(tmp_path), folder, mjml=mjml)
    names = [f"Name{i}" for i in range(50)]
    for index, name in enumerate(names):
        contact = Record(
            {
                "id": index + 1,
                "email": f"c{index}@example.com",
                "first_name": name,
                "name": name,
                "locale": None,
                "timezone": "UTC",
            }
        )
        assert (
            f"Hi {name}" in renderer.render_email("hello", context(renderer.settings, contact=contact)).html
        )
    assert mjml.calls == 1


def test_each_step_reuses_the_compiled_mjml(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "hello", section("Hi"))
    mjml = MjmlCompiler()
    renderer = Renderer(settings_for(tmp_path), folder, mjml=mjml)
    for step in ("a", "b", "c"):
        renderer.render_email("hello", context(renderer.settings), campaign_id="x", step_id=step)
    assert mjml.calls == 1


def test_editing_a_partial_and_invalidating_recompiles_it(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "hello", section("Hi"))
    mjml = MjmlCompiler()
    renderer = Renderer(settings_for(tmp_path), folder, mjml=mjml)
    renderer.render_email("hello", context(renderer.settings))
    footer = folder / "_partials" / "footer.mjml"
    footer.write_text(footer.read_text().replace("Unsubscribe", "Opt out"))
    renderer.invalidate(footer)
    assert "Opt out" in renderer.render_email("hello", context(renderer.settings)).html
    assert mjml.calls == 2


def test_block_tags_between_sections_survive_compilation(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(
        folder,
        "cond",
        "{% if coupon %}\n" + section("Code {{ coupon.code }}") + "{% endif %}\n"
        "<mj-raw>{% for item in order['items'] %}</mj-raw>\n"
        + section("Item {{ item.name }}")
        + "<mj-raw>{% endfor %}</mj-raw>\n"
        + section("{% if contact.orders_count is lt(5) and 1 < 2 %}New{% endif %}"),
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    assert renderer.compile_email("cond").mode == "once"
    order = Record({"items": [{"name": "Scarf"}, {"name": "Candle"}]})
    with_coupon = renderer.render_email(
        "cond", context(renderer.settings, order=order, coupon=Record({"code": "SORRY-1"}))
    )
    assert [
        part for part in ("Code SORRY-1", "Item Scarf", "Item Candle", "New") if part in with_coupon.text
    ] == ["Code SORRY-1", "Item Scarf", "Item Candle", "New"]
    without = renderer.render_email("cond", context(renderer.settings, order=Record({"items": []})))
    assert "Code" not in without.html and "Item" not in without.html


def test_jinja_that_changes_mjml_structure_falls_back_to_per_message(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(
        folder,
        "wide",
        '<mj-section><mj-column><mj-image src="https://shop.example.com/a.png" alt="A" '
        'width="{{ 300 if contact.first_name else 200 }}px" /></mj-column></mj-section>\n',
    )
    mjml = MjmlCompiler()
    renderer = Renderer(settings_for(tmp_path), folder, mjml=mjml)
    compiled = renderer.compile_email("wide")
    assert compiled.mode == "per_message"
    assert "per message" in (compiled.fallback_reason or "")
    message = renderer.render_email("wide", context(renderer.settings))
    assert 'width="300"' in message.html
    assert "Unsubscribe" in message.text


def test_layout_blocks_with_super_and_localised_partials(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    write(
        folder / "_partials" / "footer.ro.mjml",
        section('<a href="{{ unsubscribe_url }}">Dezabonare</a> {{ shop.postal_address }}'),
    )
    write(
        folder / "_layouts" / "framed.mjml",
        '{% extends "_layouts/base.mjml" %}{% block content %}' + section("Top") + "{% endblock %}",
    )
    write(
        folder / "child" / "email.ro.mjml",
        '---\nsubject: Salut\n---\n{% extends "_layouts/framed.mjml" %}\n{% block content %}{{ super() }}'
        + section("Mijloc")
        + "{% endblock %}\n",
    )
    write(
        folder / "child" / "email.mjml",
        '---\nsubject: Hi\n---\n{% extends "_layouts/framed.mjml" %}\n{% block content %}'
        + section("Middle")
        + "{% endblock %}\n",
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    romanian = renderer.render_email("child", context(renderer.settings), locale="ro").text
    assert romanian.index("Top") < romanian.index("Mijloc") < romanian.index("Dezabonare")
    english = renderer.render_email("child", context(renderer.settings), locale="en").text
    assert "Top" not in english and "Middle" in english and "Unsubscribe" in english


def test_mj_include_outside_the_templates_folder_is_refused(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    write(tmp_path / "secret.mjml", "<mj-section></mj-section>")
    email_file(folder, "sneaky", '<mj-include path="../../secret.mjml" />\n')
    renderer = Renderer(settings_for(tmp_path), folder)
    with pytest.raises(RenderError, match="outside the templates folder"):
        renderer.compile_email("sneaky")


def test_css_in_the_compiled_html_is_never_taken_for_a_jinja_comment(tmp_path: Path) -> None:
    # MRML output is parsed with comment delimiters that cannot occur in HTML, so minified
    # CSS such as "@media (…){#nb{…}}" stays CSS.
    folder = tmp_path / "templates"
    write(
        folder / "dark" / "email.mjml",
        "---\nsubject: s\n---\n<mjml><mj-head><mj-style>"
        "@media (prefers-color-scheme: dark) { #nb { color: #fff } }</mj-style></mj-head><mj-body>"
        + section("Hi {{ contact.first_name }}")
        + "</mj-body></mjml>\n",
    )
    renderer = Renderer(settings_for(tmp_path), folder)
    compiled = renderer.compile_email("dark")
    minified = compiled.html_source.replace("{ #nb { color: #fff } }", "{#nb{color:#fff}}")
    page = (
        renderer.environment("en", "html")
        .from_string(minified)
        .render(context(renderer.settings, unsubscribe_url="u"), subject="s", preheader="")
    )
    assert "{#nb{color:#fff}}" in page and "Hi Maria" in page


def test_unknown_template_suggests_the_closest_name(tmp_path: Path) -> None:
    folder = templates_dir(tmp_path)
    email_file(folder, "shipping-reminder", section("x"))
    renderer = Renderer(settings_for(tmp_path), folder)
    with pytest.raises(
        RenderError, match="unknown template 'shiping-reminder' \\(did you mean 'shipping-reminder'\\?\\)"
    ):
        renderer.render_email("shiping-reminder", context(renderer.settings))
