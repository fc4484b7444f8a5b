"""``tidings doctor``: print every safety, reachability and DNS check; exit 1 when any is a problem."""

from __future__ import annotations

import json

import typer

from engine.cli.context import STATE

MARKS = {"ok": "ok", "problem": "PROBLEM", "skipped": "skipped"}


def doctor_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object: {problems, checks: [...]}."),
) -> None:
    """Check the settings, the public URL and the From domain's SPF/DKIM/DMARC before real mail goes out."""
    from engine.doctor import run_doctor

    report = run_doctor(STATE.settings)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False))
    else:
        width = max(len(check.name) for check in report.checks)
        for check in report.checks:
            mark = MARKS[check.status.value].ljust(7)
            STATE.out.print(
                f"{mark}  {check.name.ljust(width)}  {check.detail}", markup=False, highlight=False
            )
            if check.hint:
                STATE.out.print(f"{'':7}  {'':{width}}  → {check.hint}", markup=False, highlight=False)
        problems = report.problems
        summary = "no problems" if not problems else f"{problems} problem{'s' if problems > 1 else ''}"
        STATE.out.print(f"{len(report.checks)} checks, {summary}.", markup=False)
    if report.problems:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)
