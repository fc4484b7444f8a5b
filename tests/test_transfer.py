"""Import and export: bad rows named by file and line, re-imports update, a round trip changes nothing."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from engine.cli import main
from engine.clock import FakeClock
from engine.demo import generate_demo_shop
from engine.store.models import Consent, Contact, ShopOrder
from engine.transfer import Kind, TransferError, export_file, import_file

CONTACT, CONSENT, ORDER = (m.__table__ for m in (Contact, Consent, ShopOrder))  # type: ignore[attr-defined]
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _clock() -> FakeClock:
    return FakeClock(NOW)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


CONTACTS_CSV = """email,first_name,country,timezone,first_seen_at,tags,attributes.birthday_month
ana.pop@example.com,Ana,RO,Europe/Bucharest,2026-01-05T10:00:00+02:00,vip;newsletter,12
mars@example.com,Elon,US,Mars/Olympus,,,
naive@example.com,Nai,EE,Europe/Tallinn,2026-01-05T10:00:00,,
not-an-email,Bad,EE,Europe/Tallinn,,,
KARL@Example.com,Karl,EE,Europe/Tallinn,,,3
"""


def test_bad_rows_are_reported_with_their_line_and_good_rows_are_imported(
    tmp_path: Path, store_engine: Engine
) -> None:
    problems: list[str] = []
    report = import_file(
        store_engine,
        "contacts",
        _write(tmp_path / "c.csv", CONTACTS_CSV),
        clock=_clock(),
        on_problem=lambda p: problems.append(str(p)),
    )
    assert (report.imported, report.updated, report.rejected) == (2, 0, 3)
    assert report.exit_code == 1
    shown = str(tmp_path / "c.csv")
    assert problems[0].startswith(f"{shown}:3: timezone: unknown IANA time zone 'Mars/Olympus'")
    assert problems[1].startswith(f"{shown}:4: first_seen_at: needs a time zone offset")
    assert problems[2].startswith(f"{shown}:5: email:")
    with store_engine.connect() as conn:
        rows = {r.email: r for r in conn.execute(select(CONTACT))}
    assert set(rows) == {"ana.pop@example.com", "karl@example.com"}
    assert rows["ana.pop@example.com"].tags == ["vip", "newsletter"]
    assert rows["ana.pop@example.com"].attributes == {"birthday_month": 12}
    assert rows["ana.pop@example.com"].first_seen_at == datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def test_a_row_with_a_multi_line_cell_is_reported_at_its_first_line(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    text = (
        'email,attributes.note,timezone\n"a@example.com","Gift wrap,\nplease",Europe/Bucharest\n'
        "b@example.com,Bo,Nowhere/Land\n"
    )
    problems: list[str] = []
    import_file(
        sqlite_engine,
        "contacts",
        _write(tmp_path / "m.csv", text),
        clock=_clock(),
        on_problem=lambda p: problems.append(str(p)),
    )
    assert len(problems) == 1 and problems[0].startswith(f"{tmp_path / 'm.csv'}:4: timezone")


def test_jsonl_rows_are_reported_at_their_own_line(tmp_path: Path, sqlite_engine: Engine) -> None:
    text = (
        '{"email": "a@example.com", "tags": ["vip"], "attributes": {"city": "Tartu"}}\n'
        "\n"
        "{not json\n"
        '{"email": "b@example.com", "shoe_size": 42}\n'
        '["a list"]\n'
    )
    problems: list[str] = []
    report = import_file(
        sqlite_engine,
        "contacts",
        _write(tmp_path / "c.jsonl", text),
        clock=_clock(),
        on_problem=lambda p: problems.append(str(p)),
    )
    assert report.imported == 1 and report.rejected == 3
    assert [p.split(": ")[0].rsplit(":", 1)[1] for p in problems] == ["3", "4", "5"]
    assert "shoe_size: unknown field" in problems[1]


def test_reimporting_the_same_file_updates_instead_of_duplicating(
    tmp_path: Path, store_engine: Engine
) -> None:
    path = _write(tmp_path / "c.csv", CONTACTS_CSV)
    import_file(store_engine, "contacts", path, clock=_clock())
    again = import_file(store_engine, "contacts", path, clock=_clock())
    assert (again.imported, again.updated, again.rejected) == (0, 2, 3)
    assert _count(store_engine, CONTACT) == 2


def test_empty_csv_cells_keep_stored_values_and_jsonl_null_clears_them(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    import_file(
        sqlite_engine,
        "contacts",
        _write(tmp_path / "a.csv", "email,first_name,locale\nana@example.com,Ana,ro\n"),
        clock=_clock(),
    )
    import_file(
        sqlite_engine,
        "contacts",
        _write(tmp_path / "b.csv", "email,first_name,locale\nana@example.com,,et\n"),
        clock=_clock(),
    )
    with sqlite_engine.connect() as conn:
        assert tuple(conn.execute(select(CONTACT.c.first_name, CONTACT.c.locale)).one()) == ("Ana", "et")
    import_file(
        sqlite_engine,
        "contacts",
        _write(tmp_path / "c.jsonl", '{"email": "ana@example.com", "first_name": null}\n'),
        clock=_clock(),
    )
    with sqlite_engine.connect() as conn:
        assert tuple(conn.execute(select(CONTACT.c.first_name, CONTACT.c.locale)).one()) == (None, "et")


def test_consent_yes_adds_a_grant_with_evidence_and_no_withdraws_it(
    tmp_path: Path, store_engine: Engine
) -> None:
    grant = (
        "email,consent_email,consent_email_at,consent_email_source,consent_email_wording\n"
        "ana@example.com,yes,2026-10-01T12:00:00+03:00,newsletter_form,email-2025-05\n"
    )
    import_file(store_engine, "contacts", _write(tmp_path / "g.csv", grant), clock=_clock())
    import_file(
        store_engine, "contacts", _write(tmp_path / "g.csv", grant), clock=_clock()
    )  # still one grant
    with store_engine.connect() as conn:
        rows = list(conn.execute(select(CONSENT)))
    assert len(rows) == 1
    assert (rows[0].channel, rows[0].source, rows[0].wording_version, rows[0].legal_basis) == (
        "email",
        "newsletter_form",
        "email-2025-05",
        "consent",
    )
    assert rows[0].granted_at == datetime(2026, 10, 1, 9, 0, tzinfo=UTC) and rows[0].withdrawn_at is None
    import_file(
        store_engine,
        "contacts",
        _write(tmp_path / "w.csv", "email,consent_email\nana@example.com,no\n"),
        clock=_clock(),
    )
    with store_engine.connect() as conn:
        withdrawn = conn.execute(select(CONSENT)).one()
    assert withdrawn.withdrawn_at == NOW and withdrawn.withdrawn_source == "import"


def test_orders_for_unknown_contacts_are_rejected_and_known_ones_update_aggregates(
    tmp_path: Path, store_engine: Engine
) -> None:
    import_file(
        store_engine, "contacts", _write(tmp_path / "c.csv", "email\nana@example.com\n"), clock=_clock()
    )
    orders = (
        "external_id,email,status,placed_at,total,currency\n"
        "O-1,ana@example.com,delivered,2026-11-28T10:00:00+02:00,40.00,EUR\n"
        "O-2,ghost@example.com,delivered,2026-11-28T10:00:00+02:00,10.00,EUR\n"
        "O-3,ana@example.com,returned,2026-12-02T10:00:00+02:00,25.50,EUR\n"
    )
    problems: list[str] = []
    report = import_file(
        store_engine,
        "orders",
        _write(tmp_path / "o.csv", orders),
        clock=_clock(),
        on_problem=lambda p: problems.append(str(p)),
    )
    assert (report.imported, report.rejected) == (2, 1)
    assert problems == [
        f"{tmp_path / 'o.csv'}:3: no contact with email 'ghost@example.com' (import contacts first)"
    ]
    with store_engine.connect() as conn:
        contact = conn.execute(select(CONTACT)).one()
    assert contact.orders_count == 2
    assert str(contact.total_spent) == "40.00"  # the returned order is not spending
    assert contact.last_order_at == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _export_all(engine: Engine, folder: Path, fmt: str) -> dict[str, bytes]:
    folder.mkdir(exist_ok=True)
    files = {}
    for kind in Kind:
        path = folder / f"{kind.value}.{fmt}"
        export_file(engine, kind, path)
        files[kind.value] = path.read_bytes()
    return files


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_import_into_an_empty_store_and_export_again_gives_identical_files(
    tmp_path: Path, sqlite_engine: Engine, store_engine: Engine, fmt: str
) -> None:
    source = sqlite_engine
    target = store_engine
    if target is source:  # the SQLite run imports into a second, empty SQLite file
        from engine.store import make_engine, upgrade

        target = make_engine(f"sqlite:///{tmp_path / 'target.db'}")
        upgrade(target)
    generate_demo_shop(source, contacts=120, seed=21, season=2026, clock=_clock())
    first = _export_all(source, tmp_path / "first", fmt)
    for kind in Kind:
        report = import_file(target, kind, tmp_path / "first" / f"{kind.value}.{fmt}", clock=_clock())
        assert report.rejected == 0, report.problems
    second = _export_all(target, tmp_path / "second", fmt)
    assert second == first
    assert first["contacts"].count(b"\n") == 121 if fmt == "csv" else first["contacts"].count(b"\n") == 120


def test_csv_attribute_values_keep_their_types_and_leading_zeros(
    tmp_path: Path, sqlite_engine: Engine
) -> None:
    text = (
        "email,attributes.birthday_month,attributes.zip,attributes.vip_since,attributes.pets\n"
        'a@example.com,7,01234,true,"[""cat""]"\n'
    )
    import_file(sqlite_engine, "contacts", _write(tmp_path / "a.csv", text), clock=_clock())
    with sqlite_engine.connect() as conn:
        attributes = conn.execute(select(CONTACT.c.attributes)).scalar_one()
    assert attributes == {"birthday_month": 7, "zip": "01234", "vip_since": True, "pets": ["cat"]}
    export_file(sqlite_engine, "contacts", tmp_path / "out.csv")
    assert (
        (tmp_path / "out.csv").read_text().endswith(',7,"[""cat""]",true,01234\n')
    )  # sorted attribute columns


def test_unreadable_files_stop_the_import_with_one_line(tmp_path: Path, sqlite_engine: Engine) -> None:
    (tmp_path / "latin1.csv").write_bytes("email,first_name\nana@example.com,Ren\xe9e\n".encode("latin-1"))
    with pytest.raises(TransferError, match=r"latin1.csv:2: not UTF-8"):
        import_file(sqlite_engine, "contacts", tmp_path / "latin1.csv", clock=_clock())
    with pytest.raises(TransferError, match="no such file"):
        import_file(sqlite_engine, "contacts", tmp_path / "missing.csv", clock=_clock())
    with pytest.raises(TransferError, match=r"unknown column 'emial' \(did you mean 'email'\?\)"):
        import_file(
            sqlite_engine, "contacts", _write(tmp_path / "h.csv", "emial\na@example.com\n"), clock=_clock()
        )
    with pytest.raises(TransferError, match="cannot tell the format"):
        import_file(sqlite_engine, "contacts", _write(tmp_path / "c.txt", "email\n"), clock=_clock())
    assert _count(sqlite_engine, CONTACT) == 0


def test_format_option_reads_a_file_whatever_its_extension(tmp_path: Path, sqlite_engine: Engine) -> None:
    path = _write(tmp_path / "contacts.txt", json.dumps({"email": "a@example.com"}) + "\n")
    report = import_file(sqlite_engine, "contacts", path, clock=_clock(), fmt="jsonl")
    assert report.imported == 1


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("TIDINGS_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_cli_import_lists_bad_rows_on_stderr_and_exits_1(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(workspace / "contacts.csv", CONTACTS_CSV)
    code = main(["--workspace", str(workspace), "import", "contacts", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"{path}:3: timezone: unknown IANA time zone 'Mars/Olympus'" in err
    assert "imported 2, updated 0, rejected 3" in out


def test_cli_import_of_a_clean_file_exits_0_and_export_writes_it_back(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(workspace / "contacts.jsonl", '{"email": "a@example.com", "country": "EE"}\n')
    assert main(["--workspace", str(workspace), "import", "contacts", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["imported"], summary["rejected"]) == (1, 0)
    assert main(["--workspace", str(workspace), "export", "contacts", str(workspace / "out.csv")]) == 0
    assert "a@example.com" in (workspace / "out.csv").read_text()


def test_cli_unreadable_file_or_unknown_kind_is_one_line_and_exit_2(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--workspace", str(workspace), "import", "contacts", str(workspace / "missing.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such file" in err
    assert main(["--workspace", str(workspace), "import", "customers", str(workspace / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "customers" in err
