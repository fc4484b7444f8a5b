"""`tidings doctor` against a real DNS server and the real public app on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from servers.dns_server import DnsServer
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.clock import FakeClock
from engine.doctor import Status, run_doctor
from engine.errors import SettingsError
from engine.settings import Settings, load_settings
from engine.web.public import create_public_app

DOMAIN = "shop.example.com"
SENDGRID_SPF = "v=spf1 include:sendgrid.net -all"
GOOD_ZONE: dict[tuple[str, str], list[str]] = {
    (DOMAIN, "TXT"): [SENDGRID_SPF, "google-site-verification=abc"],
    ("sendgrid.net", "TXT"): ["v=spf1 ip4:167.89.0.0/17 ip4:208.117.48.0/20 ~all"],
    (f"s1._domainkey.{DOMAIN}", "CNAME"): ["s1.domainkey.u123.wl1.sendgrid.net."],
    ("s1.domainkey.u123.wl1.sendgrid.net", "TXT"): [
        "k=rsa; t=s; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAx"
    ],
    (f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:dmarc@shop.example.com"],
    (f"news.{DOMAIN}", "A"): ["93.184.215.14"],
    (f"intranet.{DOMAIN}", "A"): ["10.0.0.5"],
    (f"intranet.{DOMAIN}", "AAAA"): ["fd00::5"],
}


pytestmark = pytest.mark.usefixtures("isolated_environment")


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    with DnsServer(GOOD_ZONE) as server:
        yield server


def settings_for(tmp_path: Path, dns_server: DnsServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "workspace": tmp_path,
        "from_email": f"hello@{DOMAIN}",
        "dns_nameserver": dns_server.address,
        "doctor_timeout_seconds": 1,
    }
    values.update(overrides)
    return load_settings(**values)


def by_name(settings: Settings) -> dict[str, Any]:
    return {check.name.split(" (")[0]: check for check in run_doctor(settings).checks}


def test_a_well_published_domain_passes_spf_dkim_dmarc_and_alignment(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    checks = by_name(settings_for(tmp_path, dns_server))

    for name in ("SPF", "DKIM", "DMARC", "DMARC alignment"):
        assert checks[name].status is Status.ok, checks[name]
    assert checks["SPF"].detail == SENDGRID_SPF
    assert "s1" in checks["DKIM"].detail and "p=quarantine" in checks["DMARC"].detail
    assert "d=shop.example.com" in checks["DMARC alignment"].detail
    assert ("s1.domainkey.u123.wl1.sendgrid.net.", "TXT") not in dns_server.queries  # the CNAME came with it


def test_missing_records_are_problems_with_a_hint_each(tmp_path: Path) -> None:
    with DnsServer({("other.example.org", "TXT"): ["v=spf1 -all"]}) as empty:
        checks = by_name(settings_for(tmp_path, empty))

    for name in ("SPF", "DKIM", "DMARC", "DMARC alignment"):
        assert checks[name].status is Status.problem and checks[name].hint, checks[name]
    assert "s1._domainkey.shop.example.com" in checks["DKIM"].detail
    assert "default._domainkey.shop.example.com" in checks["DKIM"].detail
    assert "Gmail/Yahoo require one" in checks["DMARC"].hint
    assert "DMARC fails by alignment" in checks["DMARC alignment"].detail


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=spf1 +all"], "lets anyone send"),
        (["v=spf1 include:sendgrid.net"], "does not end in -all or ~all"),
        (["v=spf1 include:sendgrid.net -all", "v=spf1 include:mailgun.org -all"], "2 SPF records"),
    ],
)
def test_a_weak_or_broken_spf_record_is_named(tmp_path: Path, records: list[str], expected: str) -> None:
    with DnsServer({(DOMAIN, "TXT"): records}) as server:
        checks = by_name(settings_for(tmp_path, server))

    assert checks["SPF"].status is Status.problem and expected in checks["SPF"].detail


def test_spf_over_ten_lookups_through_its_includes_is_a_permerror(tmp_path: Path) -> None:
    zone = {(DOMAIN, "TXT"): ["v=spf1 include:a.example.net include:b.example.net -all"]}
    zone[("a.example.net", "TXT")] = ["v=spf1 " + " ".join(f"a:h{n}.example.net" for n in range(5)) + " ~all"]
    zone[("b.example.net", "TXT")] = [
        "v=spf1 " + " ".join(f"mx:m{n}.example.net" for n in range(5)) + " ~all"
    ]
    with DnsServer(zone) as server:
        checks = by_name(settings_for(tmp_path, server))

    assert checks["SPF"].status is Status.problem and "12 DNS look-ups" in checks["SPF"].detail


def test_a_subdomain_inherits_dmarc_and_aligns_relaxed_through_the_parent_spf(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    checks = by_name(
        settings_for(tmp_path, dns_server, from_email=f"news@mail.{DOMAIN}", dkim_selectors="zz")
    )

    assert checks["DMARC"].status is Status.ok and f"inherited from {DOMAIN}" in checks["DMARC"].detail
    assert checks["SPF"].status is Status.problem  # nothing at mail.shop.example.com itself
    assert checks["DMARC alignment"].status is Status.ok
    assert "relaxed alignment" in checks["DMARC alignment"].detail


def test_strict_spf_alignment_needs_spf_at_the_from_domain_itself(tmp_path: Path) -> None:
    zone = {
        (DOMAIN, "TXT"): [SENDGRID_SPF],
        (f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=reject; aspf=s"],
    }
    with DnsServer(zone) as server:
        checks = by_name(settings_for(tmp_path, server, from_email=f"news@mail.{DOMAIN}"))

    assert checks["DMARC alignment"].status is Status.problem


def test_dkim_selectors_come_from_the_setting(tmp_path: Path) -> None:
    zone = {(f"google._domainkey.{DOMAIN}", "TXT"): ["v=DKIM1; k=rsa; p=MIIBIjANBg"]}
    with DnsServer(zone) as server:
        default = by_name(settings_for(tmp_path, server))
        named = by_name(settings_for(tmp_path, server, dkim_selectors="s1,google"))

    assert default["DKIM"].status is Status.problem
    assert named["DKIM"].status is Status.ok and "google" in named["DKIM"].detail


def test_a_revoked_dkim_key_is_not_a_key(tmp_path: Path) -> None:
    with DnsServer({(f"s1._domainkey.{DOMAIN}", "TXT"): ["v=DKIM1; p="]}) as server:
        checks = by_name(settings_for(tmp_path, server))

    assert checks["DKIM"].status is Status.problem and "revoked" in checks["DKIM"].detail


def test_a_dns_server_that_does_not_answer_is_a_problem_not_a_hang(tmp_path: Path) -> None:
    with DnsServer(GOOD_ZONE) as server:
        server.stall(DOMAIN)
        checks = by_name(settings_for(tmp_path, server, doctor_timeout_seconds=0.3))

    assert checks["SPF"].status is Status.problem and "timed out" in checks["SPF"].detail
    assert checks["DKIM"].status is Status.ok  # the other names still answered


def test_a_public_name_that_resolves_only_to_private_addresses_is_a_problem(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    settings = settings_for(
        tmp_path,
        dns_server,
        email_channel="sendgrid",
        sendgrid_api_key="SG.k",
        public_url=f"https://intranet.{DOMAIN}",
    )

    check = by_name(settings)["public URL resolves"]

    assert check.status is Status.problem
    assert "10.0.0.5 (a private address)" in check.detail and "fd00::5 (a private address)" in check.detail


def test_a_public_name_with_a_public_address_resolves(tmp_path: Path, dns_server: DnsServer) -> None:
    settings = settings_for(
        tmp_path,
        dns_server,
        email_channel="sendgrid",
        sendgrid_api_key="SG.k",
        public_url=f"https://news.{DOMAIN}",
    )

    checks = by_name(settings)

    assert checks["public URL"].status is Status.ok
    assert (
        checks["public URL resolves"].status is Status.ok
        and "93.184.215.14" in checks["public URL resolves"].detail
    )


@pytest.fixture
def public_app(sqlite_engine: Engine, tmp_path: Path, clock: FakeClock) -> Iterator[str]:
    """The real public app over a real socket; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    settings = Settings(workspace=tmp_path, secret_key="s" * 40, _env_file=None)  # type: ignore[call-arg]
    server = uvicorn.Server(
        uvicorn.Config(create_public_app(settings, sqlite_engine, clock), log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:  # waiting on a real server thread
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


def test_the_one_click_endpoint_is_reached_where_the_public_url_points(
    tmp_path: Path, dns_server: DnsServer, public_app: str
) -> None:
    settings = settings_for(
        tmp_path, dns_server, email_channel="sendgrid", sendgrid_api_key="SG.k", public_url=public_app
    )

    checks = by_name(settings)

    assert checks["one-click endpoint"].status is Status.ok
    assert (
        checks["public URL"].status is Status.problem
    )  # http on loopback: reachable here, not for recipients


def test_a_public_url_whose_path_does_not_reach_tidings_is_a_problem(
    tmp_path: Path, dns_server: DnsServer, public_app: str
) -> None:
    settings = settings_for(
        tmp_path,
        dns_server,
        email_channel="sendgrid",
        sendgrid_api_key="SG.k",
        public_url=f"{public_app}/tidings",
    )

    check = by_name(settings)["one-click endpoint"]

    assert check.status is Status.problem and "404" in check.detail


def test_nothing_listening_at_the_public_url_is_a_problem(tmp_path: Path, dns_server: DnsServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = settings_for(
        tmp_path, dns_server, email_channel="sendgrid", sendgrid_api_key="SG.k", public_url=closed
    )

    check = by_name(settings)["one-click endpoint"]

    assert check.status is Status.problem and "failed" in check.detail


def test_sendgrid_without_a_webhook_key_is_a_problem_and_with_one_is_ok(
    tmp_path: Path, dns_server: DnsServer
) -> None:
    base = {"email_channel": "sendgrid", "sendgrid_api_key": "SG.k"}
    without = by_name(settings_for(tmp_path, dns_server, **base))["SendGrid webhook key"]
    unsigned = by_name(settings_for(tmp_path, dns_server, sendgrid_webhook_unsigned="allow", **base))
    keyed = by_name(settings_for(tmp_path, dns_server, sendgrid_webhook_public_key="MFkw", **base))

    assert without.status is Status.problem and "bounces are lost" in without.detail
    assert unsigned["SendGrid webhook key"].status is Status.problem
    assert keyed["SendGrid webhook key"].status is Status.ok


def test_x_credentials_are_checked_only_for_the_x_channel(tmp_path: Path, dns_server: DnsServer) -> None:
    keys = {
        f"x_{name}": "v"
        for name in ("consumer_key", "consumer_secret", "access_token", "access_token_secret")
    }
    outbox = by_name(settings_for(tmp_path, dns_server))["X credentials"]
    x = by_name(
        settings_for(tmp_path, dns_server, social_channel="x", x_api_host="https://api.x.com", **keys)
    )
    plain = by_name(
        settings_for(tmp_path, dns_server, social_channel="x", x_api_host="http://x.example.net", **keys)
    )

    assert outbox.status is Status.skipped
    assert x["X credentials"].status is Status.ok and "https://api.x.com" in x["X credentials"].detail
    assert plain["X credentials"].status is Status.problem


def test_doctor_prints_every_check_and_exits_1_on_a_problem(
    tmp_path: Path, dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDINGS_DNS_NAMESERVER", dns_server.address)
    monkeypatch.setenv("TIDINGS_FROM_EMAIL", f"hello@{DOMAIN}")
    monkeypatch.setenv("TIDINGS_EMAIL_CHANNEL", "smtp")
    monkeypatch.setenv("TIDINGS_SMTP_URL", "smtp://shop:hunter2-secret@mail.example.com:587")
    monkeypatch.setenv("TIDINGS_SMTP_REQUIRE_TLS", "false")
    monkeypatch.setenv("TIDINGS_DOCTOR_TIMEOUT_SECONDS", "0.5")

    code = main(["--workspace", str(tmp_path), "doctor"])
    out = capsys.readouterr().out

    assert code == 1
    lines = out.splitlines()
    assert any(line.startswith("PROBLEM") and "SMTP TLS" in line for line in lines)
    assert any(line.startswith("PROBLEM") and "public URL " in line for line in lines)
    assert any(line.startswith("ok") and "SPF (shop.example.com)" in line for line in lines)
    assert any("→ use smtps://" in line for line in lines)
    assert "hunter2-secret" not in out
    assert lines[-1].startswith("10 checks,")


def test_doctor_json_lists_every_check_and_a_clean_setup_exits_0(
    tmp_path: Path, dns_server: DnsServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TIDINGS_DNS_NAMESERVER", dns_server.address)
    monkeypatch.setenv("TIDINGS_FROM_EMAIL", f"hello@{DOMAIN}")

    code = main(["--workspace", str(tmp_path), "doctor", "--json"])
    report = json.loads(capsys.readouterr().out)

    assert code == 0 and report["problems"] == 0
    assert [c["name"] for c in report["checks"]][-4:] == [
        f"SPF ({DOMAIN})",
        f"DKIM ({DOMAIN})",
        f"DMARC ({DOMAIN})",
        f"DMARC alignment ({DOMAIN})",
    ]
    assert {c["status"] for c in report["checks"]} == {"ok", "skipped"}
    assert all(set(c) == {"name", "status", "detail", "hint"} for c in report["checks"])


def test_a_nameserver_setting_that_is_not_an_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="TIDINGS_DNS_NAMESERVER"):
        load_settings(workspace=tmp_path, dns_nameserver="dns.example.net:53")
