"""Live reload: watch the workspace, tell every open page when something changed.

A file watcher (``watchfiles.awatch``, inotify where available) reports saved files
in batches; each batch drops the affected caches (the caller's ``on_change``) and then
is published to every subscriber of a :class:`ChangeHub`, which the ``/events``
endpoint streams as server-sent events. The page's script reloads on an event.

Every batch bumps a version (``BOOT:N``). A page carries the version it was rendered
at and the stream starts with a ``hello`` carrying the current one, so a save that
lands between the page load and the stream connecting still reloads the page, and a
restarted server (a new boot id) does too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from watchfiles import DefaultFilter, awatch

log = logging.getLogger(__name__)

WATCHED_FOLDERS = ("campaigns", "templates", "schedules")
KEEPALIVE_SECONDS = 15.0
# Editors write a file in several steps (truncate, write, rename); 100 ms groups them
# into one batch while keeping the round trip to the browser well under a second.
DEBOUNCE_MS = 100
STEP_MS = 30


class ChangeHub:
    """Fans one stream of change batches out to every connected page.

    Lives on the server's event loop. A slow page cannot hold the others up: each
    subscriber has a small queue, and when it is full the oldest batch is dropped
    (any batch reloads the page, so the newest one is all that matters).
    """

    def __init__(self) -> None:
        self.boot = secrets.token_hex(4)
        self._count = 0
        self._subscribers: set[asyncio.Queue[dict[str, object] | None]] = set()
        self._closed = False

    @property
    def version(self) -> str:
        return f"{self.boot}:{self._count}"

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, paths: Sequence[str]) -> dict[str, object]:
        self._count += 1
        change: dict[str, object] = {"version": self.version, "paths": sorted(paths)}
        for queue in list(self._subscribers):
            _offer(queue, change)
        return change

    def close(self) -> None:
        """End every stream, so the server can shut down without waiting on open pages."""
        self._closed = True
        for queue in list(self._subscribers):
            _offer(queue, None)

    @asynccontextmanager
    async def subscription(self) -> AsyncIterator[asyncio.Queue[dict[str, object] | None]]:
        queue: asyncio.Queue[dict[str, object] | None] = asyncio.Queue(maxsize=8)
        if self._closed:
            queue.put_nowait(None)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def _offer(queue: asyncio.Queue[dict[str, object] | None], item: dict[str, object] | None) -> None:
    while True:
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def event_stream(hub: ChangeHub, *, keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[str]:
    """The ``text/event-stream`` body: a hello, one ``change`` per batch, comments to keep proxies awake."""
    async with hub.subscription() as queue:
        yield "retry: 1000\n\n"
        yield _sse("hello", {"version": hub.version})
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield ": keepalive\n\n"
                continue
            if change is None:
                return
            yield _sse("change", change)


def watched_roots(workspace: Path) -> list[Path]:
    """The workspace folders that exist (watching the root would descend into var/ and .venv/)."""
    return [workspace / name for name in WATCHED_FOLDERS if (workspace / name).is_dir()]


async def watch_workspace(
    workspace: Path,
    hub: ChangeHub,
    on_change: Callable[[list[Path]], None],
    stop: asyncio.Event,
) -> None:
    """Run until ``stop`` is set: each batch of saved files → ``on_change(paths)`` → ``hub.publish``."""
    roots = watched_roots(workspace)
    if not roots:
        log.warning("live reload off: %s has none of %s", workspace, ", ".join(WATCHED_FOLDERS))
        return
    async for batch in awatch(
        *roots, watch_filter=DefaultFilter(), debounce=DEBOUNCE_MS, step=STEP_MS, stop_event=stop
    ):
        paths = sorted({Path(raw) for _kind, raw in batch})
        try:
            on_change(paths)
        except Exception:  # a broken cache drop must not stop live reload
            log.exception("dropping caches after a change failed")
        hub.publish([_relative(path, workspace) for path in paths])


def _relative(path: Path, workspace: Path) -> str:
    try:
        return path.relative_to(workspace).as_posix()
    except ValueError:
        return path.as_posix()
