"""``tidings preview`` in a thread, for the browser tests: the real uvicorn server, file watcher and all."""

from __future__ import annotations

import threading
import time

from engine.clock import SystemClock
from engine.settings import Settings
from engine.web.listen import bind_socket
from engine.web.preview import create_preview_app
from engine.web.preview.serve import PreviewServer, make_server


class RunningPreview:
    """``tidings preview`` in a thread: the real uvicorn server, file watcher and all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        app = create_preview_app(settings, clock=SystemClock())
        self.server: PreviewServer = make_server(app, app.state.preview.hub)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> RunningPreview:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the preview server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
