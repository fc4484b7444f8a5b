"""``tidings init DIR`` (a workspace that works) and ``tidings send-test`` (one [TEST] message)."""

from __future__ import annotations

from pathlib import Path

import typer

from engine.cli.context import STATE
from engine.errors import TidingsError


def init_cmd(
    folder: Path = typer.Argument(
        ..., help="Folder for the new workspace (created if missing).", file_okay=False
    ),
    force: bool = typer.Option(False, "--force", help="Write the starter into a folder that is not empty."),
) -> None:
    """Write a minimal working workspace: a campaign, a template with its sample, a segment, a schedule."""
    from engine.workspace.starter import write_starter

    written = write_starter(folder, force=force)
    out = STATE.out
    out.print(f"Wrote a workspace in {folder}:", markup=False, highlight=False)
    for path in written:
        out.print(f"  {path.as_posix()}", markup=False, highlight=False)
    today = STATE.clock.now().date()
    year = today.year - 1 if today.month == 1 else today.year
    out.print(
        f"Next: cd {folder} && tidings validate · tidings preview · tidings demo-data --contacts 200 "
        f"· tidings simulate --from {year}-12-01 --to {year}-12-31",
        markup=False,
        highlight=False,
    )


def send_test_cmd(
    template: str = typer.Argument(..., help="The template's folder name under templates/."),
    to: str = typer.Option(..., "--to", help="One address to send the test to."),
    locale: str | None = typer.Option(
        None, "--locale", help="Locale file to render (default: the sample's)."
    ),
    contact: str | None = typer.Option(
        None,
        "--contact",
        help="Render for this contact from the database (email or id) instead of the sample.",
    ),
) -> None:
    """Send one message, subject prefixed [TEST], through TIDINGS_EMAIL_CHANNEL (as the preview's button)."""
    from engine.web.preview.catalog import WorkspaceCatalog
    from engine.web.preview.rendering import TemplatePreviews, ViewOptions
    from engine.web.preview.sendtest import send_test

    settings = STATE.settings
    engine = STATE.engine(migrate=True) if contact else None
    catalog = WorkspaceCatalog(settings, STATE.clock)
    previews = TemplatePreviews(settings, STATE.clock, engine, catalog)
    options = ViewOptions.from_query({"locale": locale or "", "contact": contact or ""})
    if locale and options.locale is None:
        raise typer.BadParameter(f"not a locale: {locale!r}", param_hint="--locale")
    info = catalog.current().template(template)
    outcome = send_test(settings, STATE.clock, previews, info, template, to, options)
    if outcome.ok:
        STATE.out.print(outcome.message, markup=False, highlight=False)
        return
    # A bad address or an unknown template: the command could not start (2); a template that
    # does not render or a provider that refused: done, look at it (1).
    raise TidingsError(outcome.message, exit_code=2 if outcome.status in {400, 404} else 1)


def register(root: typer.Typer) -> None:
    root.command("init")(init_cmd)
    root.command("send-test")(send_test_cmd)


__all__ = ["register"]
