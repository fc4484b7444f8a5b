"""Settings: a bad value is one line naming the variable, secrets never show, paths follow the workspace."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import SettingsError
from engine.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--workspace", str(tmp_path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bad_database_url_stops_the_cli_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_DATABASE_URL", "mysql://shop@localhost/tidings")
    code, _, err = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "TIDINGS_DATABASE_URL" in err and "Traceback" not in err


def test_unknown_email_channel_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "pigeon")
    code, _, err = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "TIDINGS_EMAIL_CHANNEL" in err


def test_short_secret_key_is_refused_without_printing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_SECRET_KEY", "hunter2-too-short")
    code, out, err = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 2
    assert "TIDINGS_SECRET_KEY" in err and "32 characters" in err
    assert "hunter2-too-short" not in out + err


def test_sendgrid_channel_without_a_key_names_the_missing_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "sendgrid")
    code, _, err = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "TIDINGS_SENDGRID_API_KEY" in err


def test_malformed_smtp_url_is_refused_without_printing_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "smtp")
    monkeypatch.setenv("TIDINGS_SMTP_URL", "http://mailer:s3cret-Passw0rd@mail.example.com:25")
    code, out, err = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 2
    assert "TIDINGS_SMTP_URL" in err
    assert "s3cret-Passw0rd" not in out + err


def test_secrets_are_masked_when_settings_are_printed() -> None:
    settings = load_settings(
        secret_key="k" * 40, email_channel="sendgrid", sendgrid_api_key="SG.very-secret-api-key"
    )
    shown = repr(settings) + str(settings.model_dump())
    assert "SG.very-secret-api-key" not in shown
    assert "k" * 40 not in shown
    assert "SG.very-secret-api-key" in settings.secret_values()


def test_unknown_time_zone_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="TIDINGS_TIMEZONE"):
        load_settings(timezone="Mars/Olympus")


def test_relative_database_path_resolves_against_the_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "shop"
    settings = Settings(workspace=workspace, database_url="sqlite:///var/shop.db")
    assert settings.database_url_resolved == f"sqlite:///{workspace.resolve() / 'var' / 'shop.db'}"


def test_relative_outbox_resolves_against_the_workspace_and_absolute_stays(tmp_path: Path) -> None:
    settings = Settings(workspace=tmp_path, outbox_dir=Path("var/outbox"))
    assert settings.outbox_path == tmp_path.resolve() / "var" / "outbox"
    elsewhere = tmp_path / "elsewhere"
    assert Settings(workspace=tmp_path, outbox_dir=elsewhere).outbox_path == elsewhere


def test_workspace_option_decides_where_the_database_is_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, _ = _run(capsys, tmp_path, "db", "upgrade")
    assert code == 0
    assert (tmp_path / "var" / "tidings.db").exists()


def test_postgres_url_is_mapped_to_psycopg_3() -> None:
    settings = Settings(database_url="postgres://postgres@127.0.0.1:5432/shop")
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_an_unsubscribe_mailbox_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(SettingsError, match="TIDINGS_UNSUBSCRIBE_MAILTO"):
        load_settings(unsubscribe_mailto="unsubscribe at shop")


def test_an_unsubscribe_mailbox_given_as_a_mailto_link_is_kept_as_its_address() -> None:
    assert load_settings(unsubscribe_mailto="mailto:optout@shop.example.com").unsubscribe_mailto == (
        "optout@shop.example.com"
    )


def test_support_contacts_reach_templates_as_shop_support(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_SHOP__SUPPORT_EMAIL", "care@nordlys.example")
    monkeypatch.setenv("TIDINGS_SHOP__SUPPORT_PHONE", "+40 21 555 0101")
    monkeypatch.setenv("TIDINGS_SHOP__SUPPORT_CHAT_URL", "")
    monkeypatch.setenv("TIDINGS_SHOP__SUPPORT_HOURS", "mon-thu 8:30-18:00; Fri 08:30-15:00 Europe/Bucharest")
    support = load_settings().shop.as_context()["support"]
    assert support == {
        "email": "care@nordlys.example",
        "phone": "+40 21 555 0101",
        "phone_dial": "+40215550101",
        "chat_url": None,  # an empty value switches the chat line off
        "hours": "Mon-Thu 08:30-18:00, Fri 08:30-15:00 Europe/Bucharest",
    }


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("TIDINGS_SHOP__SUPPORT_EMAIL", "help desk", "the address customers write to"),
        ("TIDINGS_SHOP__SUPPORT_PHONE", "600 1234", "international number"),
        ("TIDINGS_SHOP__SUPPORT_HOURS", "Mon-Fri 9-17", "weekdays, hours and a time zone"),
        ("TIDINGS_SHOP__SUPPORT_HOURS", "Mon-Fri 09:00-17:00 Europe/Talinn", "unknown IANA time zone"),
        ("TIDINGS_SHOP__SUPPORT_HOURS", "Fri-Mon 09:00-17:00 UTC", "the days run backwards"),
        ("TIDINGS_SHOP__SUPPORT_HOURS", "Mon 17:00-09:00 UTC", "closes before it opens"),
        ("TIDINGS_SHOP__SUPPORT_HOURS", "Mon-Fre 09:00-17:00 UTC", "unknown weekday 'Fre'"),
    ],
)
def test_a_bad_support_setting_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert variable in message and said in message and "\n" not in message
