"""A template cannot freeze or exhaust the engine: every render runs under a budget.

Each hostile template fails its message with a RenderError that names the author's file and
the line of the tag that did it (what the runtime records as ``render_error`` and ``validate``
reports), and a template doing ordinary work in loops still renders.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import context, email_file, section, settings_for, templates_dir, write

from engine.render import Renderer, RenderError
from engine.workspace.expressions import ExpressionError, check_expression, evaluate
from engine.workspace.render_budget import MAX_STEPS, MAX_STRING, BudgetExceeded

BODY_LINE = 6  # email_file: three lines of front matter, extends, block, then the body


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return templates_dir(tmp_path)


def render_error(folder: Path, body: str, **settings: object) -> RenderError:
    email_file(folder, "hostile", body)
    renderer = Renderer(settings_for(folder.parent, **settings), folder)
    with pytest.raises(RenderError) as caught:
        renderer.render_email("hostile", context(renderer.settings))
    return caught.value


def test_two_nested_range_loops_fail_fast_at_the_inner_loop(folder: Path) -> None:
    error = render_error(
        folder,
        "<mj-section><mj-column><mj-text>{% for i in range(100000) %}\n"
        "{% for j in range(100000) %}.{% endfor %}{% endfor %}</mj-text></mj-column></mj-section>\n",
    )

    assert (Path(error.path or "").name, error.line) == ("email.mjml", BODY_LINE + 1)
    assert f"more than {MAX_STEPS:,} loop iterations" in error.reason


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("'x' * 10**9", "1,000,000,000 characters"),
        ("(10**10000)|string", "digits"),
        ("9**99999", "digits"),
        ("[0] * 10**7", "10,000,000 items"),
        ("'x'.center(10**9)", "center()"),
        ("'x'|center(10**9)", "center with 1,000,000,000"),
        ("'%0999999999d'|format(1)", "characters"),
        ("'{:>999999999}'.format(1)", "format width"),
        ("('x' * 900000) ~ ('y' * 900000)", "made with ~"),
        ("(['ab'] * 90000)|join('x' * 20)", "joined string"),
        ("('x' * 500000)|replace('x', 'yyyy')", "replace"),
        ("('a\\n' * 100000)|indent(100)", "indent"),
        ("range(10)|batch(10**8, 'x')|list", "batch"),
    ],
)
def test_size_blowups_are_refused_before_the_memory_is_taken(
    folder: Path, expression: str, says: str
) -> None:
    error = render_error(folder, section("{{ " + expression + " }}"))

    assert (Path(error.path or "").name, error.line) == ("email.mjml", BODY_LINE)
    assert says in error.reason


def test_a_string_doubled_in_a_loop_stops_at_the_string_budget(folder: Path) -> None:
    error = render_error(
        folder,
        "{% set ns = namespace(s='x') %}\n"
        "{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}\n" + section("{{ ns.s|length }}"),
    )

    assert error.line == BODY_LINE + 1
    assert f"at most {MAX_STRING:,}" in error.reason


def test_a_loop_writing_a_large_value_many_times_stops_before_the_message_is_joined(folder: Path) -> None:
    error = render_error(
        folder,
        "{% set big = 'x' * 50000 %}\n" + section("{% for i in range(1000) %}{{ big }}{% endfor %}"),
    )

    assert "the message would be" in error.reason or "large strings" in error.reason


def test_a_macro_whose_output_grows_past_the_budget_is_refused(folder: Path) -> None:
    error = render_error(
        folder,
        "{% macro rows(n) %}{% for i in range(n) %}{{ 'x' * 50000 }}{% endfor %}{% endmacro %}\n"
        + section("{{ rows(100) }}"),
    )

    assert "characters" in error.reason


def test_a_macro_calling_itself_is_a_located_error_not_a_crash(folder: Path) -> None:
    error = render_error(
        folder,
        "{% macro again(n) %}{{ again(n + 1) }}{% endmacro %}\n" + section("{{ again(1) }}"),
    )

    assert "calls itself" in error.reason
    assert error.line == BODY_LINE


def test_a_slow_render_stops_at_the_time_budget(folder: Path) -> None:
    error = render_error(
        folder,
        section("{% for i in range(90000) %}{{ ('x' * 20000)|replace('x', 'y')|length }}{% endfor %}"),
        render_timeout_seconds=0.05,
    )

    assert "took more than 0.05 s" in error.reason
    assert error.line == BODY_LINE


def test_ordinary_loops_and_arithmetic_still_render(folder: Path) -> None:
    email_file(
        folder,
        "list",
        section(
            "{% for row in range(3) %}{% for col in range(200) %}{{ (row * col) % 7 }}{% endfor %}"
            "{% endfor %} {{ ['a', 'b']|join(', ') }} {{ 'Hi %s'|format(contact.first_name) }} {{ 2 ** 64 }}"
        ),
    )
    renderer = Renderer(settings_for(folder.parent), folder)

    message = renderer.render_email("list", context(renderer.settings))

    assert "a, b Hi Maria 18446744073709551616" in message.text


def test_a_post_template_is_bounded_the_same_way(folder: Path) -> None:
    write(
        folder / "countdown" / "post.txt",
        "Order now!\n{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}\n",
    )
    renderer = Renderer(settings_for(folder.parent), folder)

    with pytest.raises(RenderError) as caught:
        renderer.render_post("countdown", context(renderer.settings))

    assert (Path(caught.value.path or "").name, caught.value.line) == ("post.txt", 2)


def test_brackets_nested_past_the_parser_are_a_syntax_error_at_their_line(folder: Path) -> None:
    deep = "(" * 3000 + "1" + ")" * 3000
    email_file(folder, "deep", section("fine") + section("{{ " + deep + " }}"))
    renderer = Renderer(settings_for(folder.parent), folder)

    with pytest.raises(RenderError) as caught:
        renderer.compile_email("deep")

    assert caught.value.line == BODY_LINE + 1 and "nested too deeply" in caught.value.reason
    with pytest.raises(ExpressionError, match="too deeply"):
        check_expression(deep + " > 0")


def test_campaign_expressions_refuse_huge_numbers_at_load_and_at_evaluation() -> None:
    check_expression("9 ** (9 ** 9) > 0")  # compiles at once: nothing is computed while loading

    with pytest.raises(BudgetExceeded):
        evaluate("9 ** (9 ** 9) > 0", {})
    assert evaluate("contact.orders_count * 2 > 1", {"contact": {"orders_count": 3}})
