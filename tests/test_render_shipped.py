"""The shipped templates: every one renders in English, Romanian and Estonian with its sample."""

from __future__ import annotations

from pathlib import Path

import pytest
from render_support import settings_for
from twitter_text import parse_tweet

from engine.render import Renderer, load_sample, sample_context
from engine.render.checks import check_template, is_marketing
from engine.workspace.loader import load_workspace

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
SHIPPED = sorted(p.name for p in TEMPLATES.iterdir() if p.is_dir() and not p.name.startswith("_"))
LOCALES = ("en", "ro", "et")


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(settings_for(tmp_path_factory.mktemp("ws")), TEMPLATES)


def test_the_example_shop_ships_every_template_of_the_season() -> None:
    assert set(SHIPPED) >= {
        "holiday-greeting",
        "holiday-greeting-b",
        "shipping-reminder",
        "shipping-countdown",
        "last-minute-gift-card",
        "gift-card-welcome",
        "gift-card-ideas",
        "gift-card-ideas-b",
        "gift-card-balance",
        "exchange-help",
        "apology-coupon",
        "win-back",
        "returns-week-post",
        "gift-card-delivery",
        "gift-card-waiting",
        "return-received",
        "exchange-requested",
        "exchange-shipped",
        "claim-opened",
        "claim-resolved",
        "goodwill-apology",
    }


@pytest.fixture(scope="module")
def sent_as() -> dict[str, list[str]]:
    """The category of every shipped campaign that sends each template."""
    workspace = load_workspace(REPO).workspace
    return {name: [str(c.category.value) for c in workspace.campaigns_using(name)] for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_template_has_all_three_locales_and_a_sample(renderer: Renderer, name: str) -> None:
    assert sorted(locale for _, locale in renderer.locale_files(name)) == sorted(LOCALES)
    assert (TEMPLATES / name / "sample.yaml").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_template_renders_cleanly_in_every_locale(
    renderer: Renderer, sent_as: dict[str, list[str]], name: str
) -> None:
    sample = load_sample(TEMPLATES / name / "sample.yaml", renderer.settings)
    marketing = is_marketing(renderer, name, sent_as[name])
    for locale in LOCALES:
        context = sample_context(sample, renderer.settings)
        problems = check_template(renderer, name, context, locale=locale, marketing=marketing)
        assert [str(p) for p in problems] == []
        if renderer.kind(name) == "post":
            text = renderer.render_post(name, context, locale=locale).text
            assert parse_tweet(text).weightedLength <= 280
        else:
            compiled = renderer.compile_email(name, locale)
            assert compiled.mode == "once" and compiled.locale == locale
            message = renderer.render_email(name, context, locale=locale, marketing=marketing)
            assert message.preheader and message.subject and message.text.strip()
            assert '<meta name="color-scheme" content="light dark"' in message.html
            assert f'lang="{locale}"' in message.html


def test_translations_are_written_with_their_diacritics() -> None:
    romanian = "".join(p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*/email.ro.mjml"))
    estonian = "".join(p.read_text(encoding="utf-8") for p in TEMPLATES.glob("*/email.et.mjml"))
    assert all(ch in romanian for ch in "ăâîșț")
    assert all(ch in estonian for ch in "õäöü")
