"""Serving the preview app with uvicorn, for ``tidings preview`` and the browser tests.

Three things differ from a plain ``uvicorn.run``:

* the socket is bound first (:mod:`engine.web.listen`), so "address already in use" becomes one
  line and exit code 2 instead of a log record and a bare ``sys.exit(1)`` from inside uvicorn;
* shutting down first ends the live-reload streams: an open page holds a server-sent
  events response forever, and uvicorn waits for open responses before it stops;
* Ctrl-C or SIGTERM is a normal stop (exit 0), not an interruption.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from engine.web.preview.livereload import ChangeHub


class PreviewServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: ChangeHub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.close()
        await super().shutdown(sockets)
        # uvicorn re-raises the signal that stopped it once it is down (so a parent sees "killed by
        # SIGTERM"); Ctrl-C is how the preview is meant to stop, so a clean stop exits 0 instead.
        self._captured_signals.clear()


def make_server(app: Any, hub: ChangeHub) -> PreviewServer:
    config = uvicorn.Config(
        app,
        log_config=None,  # keep the engine's logging (redaction, JSON format)
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    return PreviewServer(config, hub)


__all__ = ["PreviewServer", "make_server"]
