"""Settings that would hurt a shop's real mail stop `run`, `trigger` and `worker` before anything is sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.safety import host_scope, start_refusals
from engine.settings import load_settings

SENDGRID = {"TIDINGS_EMAIL_CHANNEL": "sendgrid", "TIDINGS_SENDGRID_API_KEY": "SG.secret-key-123"}
SMTP_PASSWORD = "hunter2-in-clear"


pytestmark = pytest.mark.usefixtures("isolated_environment")


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--workspace", str(tmp_path), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _environment(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


COMMANDS = [("run", "--no-public"), ("trigger", "holiday-greetings"), ("worker",)]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_real_email_channel_without_a_public_url_does_not_start(
    command: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _environment(monkeypatch, SENDGRID)

    code, out, err = _run(capsys, tmp_path, *command)

    assert code == 2
    [line] = err.strip().splitlines()
    assert "TIDINGS_PUBLIC_URL" in line and "not set (default http://127.0.0.1:8026)" in line
    assert "https" in line
    assert "SG.secret-key-123" not in out + err
    assert not (tmp_path / "var" / "tidings.db").exists()  # refused before the database was touched


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://shop.example.com", "is not https"),
        ("https://127.0.0.1:8026", "a loopback address"),
        ("https://10.1.2.3", "a private address"),
        ("https://192.168.1.20/tidings", "a private address"),
        ("https://169.254.10.1", "a link-local address"),
        ("https://0.0.0.0", "an unspecified address"),
        ("https://[::1]:8443", "a loopback address"),
        ("https://[fe80::1]", "a link-local address"),
        ("https://localhost:8443", "a local name"),
        ("https://tidings.internal", "a local name"),
        ("https://shop.local", "a local name"),
        ("https://tidings", "a name without a domain"),
    ],
)
def test_a_public_url_recipients_cannot_use_is_refused_for_trigger(
    url: str,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    _environment(monkeypatch, {**SENDGRID, "TIDINGS_PUBLIC_URL": url})

    code, _, err = _run(capsys, tmp_path, "trigger", "holiday-greetings")

    assert code == 2
    [line] = err.strip().splitlines()
    assert "TIDINGS_PUBLIC_URL" in line and why in line


def test_smtp_credentials_without_required_tls_do_not_start_and_the_password_is_not_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _environment(
        monkeypatch,
        {
            "TIDINGS_EMAIL_CHANNEL": "smtp",
            "TIDINGS_SMTP_URL": f"smtp://shop:{SMTP_PASSWORD}@mail.example.com:587",
            "TIDINGS_SMTP_REQUIRE_TLS": "false",
            "TIDINGS_PUBLIC_URL": "https://shop.example.com",
        },
    )

    code, out, err = _run(capsys, tmp_path, "run", "--no-public")

    assert code == 2
    [line] = err.strip().splitlines()
    assert "TIDINGS_SMTP_REQUIRE_TLS" in line and "in clear" in line
    assert SMTP_PASSWORD not in out + err


@pytest.mark.parametrize(
    "smtp",
    [
        {"TIDINGS_SMTP_URL": "smtps://shop:pw@mail.example.com"},
        {"TIDINGS_SMTP_URL": "smtp://shop:pw@mail.example.com:587"},  # STARTTLS required (default)
        {"TIDINGS_SMTP_URL": "smtp://relay.example.com:25", "TIDINGS_SMTP_REQUIRE_TLS": "false"},
    ],
    ids=["smtps", "starttls-required", "plain-relay-without-credentials"],
)
def test_safe_smtp_settings_with_an_https_public_url_are_accepted(smtp: dict[str, str]) -> None:
    settings = load_settings(email_channel="smtp", public_url="https://shop.example.com/t", **_fields(smtp))

    assert start_refusals(settings) == []


def test_the_file_outbox_runs_with_the_local_default_public_url() -> None:
    assert start_refusals(load_settings()) == []


def test_a_safe_configuration_gets_past_the_refusal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _environment(monkeypatch, {**SENDGRID, "TIDINGS_PUBLIC_URL": "https://shop.example.com"})

    code, _, err = _run(capsys, tmp_path, "trigger", "no-such-campaign")

    assert "TIDINGS_PUBLIC_URL" not in err
    assert "no-such-campaign" in err and code != 0  # it went on to look for the campaign


def test_every_refusal_is_counted_when_there_are_several(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _environment(
        monkeypatch,
        {
            "TIDINGS_EMAIL_CHANNEL": "smtp",
            "TIDINGS_SMTP_URL": "smtp://shop:pw@mail.example.com:587",
            "TIDINGS_SMTP_REQUIRE_TLS": "false",
        },
    )

    code, _, err = _run(capsys, tmp_path, "worker")

    assert code == 2
    [line] = err.strip().splitlines()
    assert "TIDINGS_PUBLIC_URL" in line and "(and 1 more: run `tidings doctor`)" in line


@pytest.mark.parametrize(
    ("host", "scope"),
    [
        ("shop.example.com", None),
        ("93.184.215.14", None),
        ("2606:4700::6810:84e5", None),
        ("100.64.0.1", "an address that is not publicly routable"),
        ("::ffff:10.0.0.1", "a private address"),
        ("LOCALHOST.", "a local name"),
        ("router.home.arpa", "a local name"),
    ],
)
def test_hosts_are_judged_by_their_form_without_any_lookup(host: str, scope: str | None) -> None:
    assert host_scope(host) == scope


def _fields(environment: dict[str, str]) -> dict[str, str]:
    return {name.removeprefix("TIDINGS_").lower(): value for name, value in environment.items()}
