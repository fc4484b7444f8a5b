"""The message checks on rendered HTML: links, spam heuristics and accessibility, each naming its element."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.message import EmailMessage
from engine.render import Renderer, load_sample, sample_context
from engine.render.audit import Finding, audit_message
from engine.render.audit.document import Document, contrast_ratio
from engine.render.checks import written_as_marketing
from engine.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
LONG_TEXT = "Our knitwear is made by hand in Tallinn from wool we buy from farms we know. " * 8


def _message(
    body: str, *, subject: str = "Warm wishes", lang: str = "en", text: str = "x", head: str = ""
) -> EmailMessage:
    html = (
        f'<!doctype html><html lang="{lang}"><head><title>{subject}</title>{head}</head>'
        f'<body style="background:#ffffff">{body}</body></html>'
    )
    return EmailMessage(
        to_email="ana@example.com",
        from_email="hello@shop.example.com",
        subject=subject,
        html=html,
        text=text,
        preheader="A gift wrapped by hand",
    )


def _rules(message: EmailMessage, locale: str = "en") -> dict[str, list[Finding]]:
    found: dict[str, list[Finding]] = {}
    for finding in audit_message(message, locale=locale).findings:
        found.setdefault(finding.rule, []).append(finding)
    return found


def test_the_shipped_templates_pass_every_check_but_the_heading_advice() -> None:
    settings = load_settings(workspace=REPO)
    renderer = Renderer(settings, REPO / "templates")
    for template in renderer.templates():
        if renderer.kind(template) != "email":
            continue
        marketing = written_as_marketing(renderer, template)  # a service message has no unsubscribe link
        for locale in ("en", "ro", "et"):
            sample = load_sample(REPO / "templates" / template / "sample.yaml", settings)
            context = sample_context(sample, settings)
            message = renderer.render_email(template, context, locale=locale, marketing=marketing)
            serious = [f for f in audit_message(message, locale=locale).findings if f.severity != "info"]
            assert serious == [], (template, locale, serious)


def test_a_link_of_another_scheme_and_a_relative_image_are_named() -> None:
    message = _message(
        f'<p>{LONG_TEXT}</p><a href="javascript:alert(1)">Shop</a><img src="/logo.png" alt="Logo">'
    )
    found = _rules(message)

    (link,) = found["link-form"]
    assert "not an http(s), mailto or tel link" in link.message and link.element.startswith(
        '<a href="javascript'
    )
    (image,) = found["image-source"]
    assert "not an absolute http(s) address" in image.message and 'src="/logo.png"' in image.element


def test_hidden_text_is_flagged_but_the_preheader_is_not() -> None:
    message = _message(
        '<div style="display:none;font-size:1px;max-height:0px;overflow:hidden">'
        "A gift wrapped by hand&#847;</div>"
        f"<p>{LONG_TEXT}</p>"
        '<div style="display:none">cheap pills cheap pills</div>'
    )
    (hidden,) = _rules(message)["hidden-text"]
    assert "display:none" in hidden.message and "cheap pills" in hidden.element


def test_near_invisible_and_tiny_text_are_spam_signals_and_contrast_failures() -> None:
    message = _message(
        f'<p>{LONG_TEXT}</p><p style="color:#fdfdfd">white on white</p><p style="font-size:4px">tiny</p>'
        '<table role="presentation"><tr><td bgcolor="#222222"><span style="color:#444444">dark on dark</span>'
        "</td></tr></table>"
    )
    found = _rules(message)

    assert {f.element for f in found["low-contrast-text"]} >= {"<p>white on white</p>"}
    assert found["tiny-text"][0].element == "<p>tiny</p>"
    contrast = {f.element: f for f in found["contrast"]}
    assert "#444444 on #222222" in contrast["<span>dark on dark</span>"].message
    assert contrast["<span>dark on dark</span>"].reference == "WCAG 2.1 1.4.3"


def test_large_bold_text_needs_only_three_to_one() -> None:
    grey = "color:#949494"  # 3.03:1 on white
    passing = _message(f'<p>{LONG_TEXT}</p><p style="{grey};font-size:19px;font-weight:bold">Sale</p>')
    failing = _message(f'<p>{LONG_TEXT}</p><p style="{grey};font-size:19px">Sale</p>')

    assert "contrast" not in _rules(passing)
    assert len(_rules(failing)["contrast"]) == 1


def test_styles_from_a_style_block_are_applied_before_judging_contrast() -> None:
    message = _message(
        f'<p>{LONG_TEXT}</p><p class="faint">faint footer</p>', head="<style>.faint{color:#cccccc}</style>"
    )
    assert "#cccccc on #ffffff" in _rules(message)["contrast"][0].message


def test_images_without_alt_or_with_a_file_name_and_links_without_a_name() -> None:
    message = _message(
        f"<p>{LONG_TEXT}</p>"
        '<img src="https://cdn.example.com/a.png">'
        '<img src="https://cdn.example.com/b.png" alt="IMG_0042.jpg">'
        '<a href="https://shop.example.com/x"><img src="https://cdn.example.com/c.png" alt=""></a>'
        '<a href="https://shop.example.com/y">Click here</a>'
    )
    found = _rules(message)

    alts = sorted(f.severity for f in found["img-alt"])
    assert alts == ["error", "warning"]
    names = {f.severity: f for f in found["link-name"]}
    assert names["error"].element.startswith('<a href="https://shop.example.com/x">')
    assert "'Click here'" in names["warning"].message


def test_language_missing_or_different_from_the_locale() -> None:
    assert _rules(_message(f"<p>{LONG_TEXT}</p>", lang="und"))["lang"][0].severity == "error"
    (other,) = _rules(_message(f"<p>{LONG_TEXT}</p>", lang="en"), locale="ro")["lang"]
    assert other.severity == "warning" and "ro version" in other.message
    assert "lang" not in _rules(_message(f"<p>{LONG_TEXT}</p>", lang="ro-RO"), locale="ro")


def test_skipped_heading_levels_and_layout_tables() -> None:
    message = _message(f"<h1>Hello</h1><h3>Details</h3><table><tr><td>{LONG_TEXT}</td></tr></table>")
    found = _rules(message)

    assert found["heading-order"][0].element == "<h3>Details</h3>"
    assert found["layout-table"][0].severity == "warning"


def test_image_only_mail_and_shouting_subjects_and_shorteners() -> None:
    message = _message(
        '<img src="https://cdn.example.com/sale.png" alt="Sale" width="600" height="900">'
        '<a href="https://bit.ly/abc">shop.example.com</a>',
        subject="HUGE WINTER SALE NOW!!!",
        text="",
    )
    found = _rules(message)

    assert {"image-only", "subject-caps", "subject-punctuation", "url-shortener", "no-text-part"} <= set(
        found
    )
    assert "link-text-host" in found and "goes to bit.ly" in found["link-text-host"][0].message


def test_a_picture_heavy_message_trips_the_image_ratio() -> None:
    text = "Warm knitwear for winter evenings, wrapped by hand. " * 9
    message = _message(
        f'<p>{text}</p><img src="https://cdn.example.com/a.png" alt="A" width="600" height="600">'
    )
    found = _rules(message)
    assert "image-ratio" in found and "image-only" not in found


@pytest.mark.parametrize(
    ("first", "second", "ratio"), [("#000000", "#ffffff", 21.0), ("#777777", "#ffffff", 4.48)]
)
def test_contrast_ratio_is_wcags(first: str, second: str, ratio: float) -> None:
    from engine.render.audit.document import parse_colour

    a, b = parse_colour(first), parse_colour(second)
    assert a is not None and b is not None
    assert contrast_ratio(a[0], b[0]) == pytest.approx(ratio, abs=0.01)


def test_semi_transparent_text_is_blended_over_its_background() -> None:
    document = Document('<html><body><p style="color:rgba(0,0,0,0.5)">half</p></body></html>')
    (run,) = document.runs()
    assert run.style.colour == pytest.approx((0.5, 0.5, 0.5))
