"""``tidings db …``: schema migrations."""

from __future__ import annotations

import typer

from engine.cli.context import STATE

app = typer.Typer(help="Database schema: create and migrate.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_cmd(revision: str = typer.Argument("head", help="Target revision.")) -> None:
    """Create or migrate the schema to the latest revision (safe to run any number of times)."""
    from engine.store import upgrade

    engine = STATE.engine()
    before, after = upgrade(engine, revision)
    url = engine.url.render_as_string(hide_password=True)
    if before == after:
        STATE.out.print(f"Database {url} is up to date (revision {after}).")
    else:
        STATE.out.print(f"Database {url} migrated from {before or 'empty'} to {after}.")


@app.command("current")
def current_cmd() -> None:
    """Print the schema revision the database is at."""
    from engine.store import current_revision

    STATE.out.print(current_revision(STATE.engine()) or "empty")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="db")
