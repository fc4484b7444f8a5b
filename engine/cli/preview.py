"""``tidings preview``: serve the preview app (templates as sent, live reload, outbox, timeline)."""

from __future__ import annotations

import typer

from engine.cli.context import STATE
from engine.errors import StoreUnavailable


def preview_cmd(
    port: int | None = typer.Option(
        None, "--port", "-p", min=1, max=65535, help="Port to listen on (default: from TIDINGS_PREVIEW_BIND)."
    ),
) -> None:
    """Preview every template while you edit it: pages reload when you save (Ctrl-C stops)."""
    from engine.web.listen import bind_socket, split_bind
    from engine.web.preview import create_preview_app
    from engine.web.preview.serve import make_server

    settings = STATE.settings
    host, bind_port = split_bind(settings.preview_bind)
    setting = None if port else "TIDINGS_PREVIEW_BIND"  # an address given with --port names no setting
    port = port or bind_port
    try:
        engine = STATE.engine(migrate=True)
    except StoreUnavailable as exc:
        # The samples still render; only the contact picker needs the database.
        STATE.err.print(f"tidings: warning: {exc}; the contact picker is off", markup=False)
        engine = None
    sock = bind_socket(host, port, setting=setting)
    app = create_preview_app(settings, engine=engine, clock=STATE.clock)
    shown = f"[{host}]" if ":" in host else host
    STATE.out.print(
        f"Preview of {settings.workspace_dir} on http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops)"
    )
    make_server(app, app.state.preview.hub).run(sockets=[sock])


def register(root: typer.Typer) -> None:
    root.command("preview")(preview_cmd)
