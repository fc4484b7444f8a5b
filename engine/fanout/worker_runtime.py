"""What one ``tidings worker`` process holds while it runs batches.

One database engine and one loaded workspace per process; one
:class:`~engine.runtime.dispatcher.Dispatcher` per pool thread, because a dispatcher runs one
batch at a time (it has its own send threads, renderer cache and rate-limit buckets; the
buckets' balance is shared by every process, see :mod:`engine.runtime.ratelimit`). One
:class:`~engine.runtime.heartbeat.LeaseHeartbeat` per process keeps the claims of its batches in
progress, and their receipts, alive while it is.

Workers usually run on other hosts than the daemon, from a deployed copy of the workspace.
When those files change (a deploy, an edited template), the next batch notices within
:data:`WORKSPACE_CHECK_SECONDS` and runs on the new version, if it validates; a version that
does not validate is logged and the last good one stays in use, as the daemon does. Sends render
from a reviewed copy of the templates, exactly as the daemon's own (:mod:`engine.render.accepted`):
every changed template is rendered against its samples under the send budget first, and one that
fails keeps its last good version — a worker never renders what the daemon would have held back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from engine.clock import Clock, SystemClock
from engine.errors import TidingsError
from engine.fanout.receipts import batch_receipt
from engine.leadership import process_holder
from engine.render.accepted import AcceptedTemplates
from engine.runtime.dispatcher import Dispatcher, dispatcher_for
from engine.runtime.heartbeat import LeaseHeartbeat
from engine.settings import Settings
from engine.workspace.loader import Workspace, load_workspace

log = logging.getLogger("tidings.worker")

WORKSPACE_CHECK_SECONDS = 5.0
WATCHED = ("campaigns", "templates", "schedules")


class WorkspaceInvalid(TidingsError):
    """The worker's copy of the workspace does not validate, so it cannot render anything safely."""


def workspace_fingerprint(root: Path) -> tuple[int, int, int]:
    """(files, newest mtime, total size) of the workspace's files: cheap, and changes with any edit."""
    count = newest = size = 0
    for folder in WATCHED:
        for path in _files(root / folder):
            try:
                stat = path.stat()
            except OSError:
                continue
            count += 1
            newest = max(newest, stat.st_mtime_ns)
            size += stat.st_size
    return count, newest, size


def _files(folder: Path) -> Iterator[Path]:
    if folder.is_dir():
        yield from (path for path in folder.rglob("*") if path.is_file())


def load_valid_workspace(settings: Settings) -> Workspace:
    result = load_workspace(settings.workspace_dir, default_timezone=settings.timezone)
    if not result.ok:
        raise WorkspaceInvalid(
            f"the workspace {settings.workspace_dir} has {len(result.errors)} problem(s); "
            f"first: {result.errors[0]} (run `tidings validate`)"
        )
    return result.workspace


@dataclass
class _ThreadDispatcher:
    dispatcher: Dispatcher
    version: int


class WorkerRuntime:
    """Settings, engine, workspace and per-thread dispatchers of one worker process.

    Thread-safe: Celery's thread pool calls :meth:`dispatcher` from several threads at once.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        workspace: Workspace,
        *,
        clock: Clock | None = None,
        make_dispatcher: Callable[[Engine, Settings, Clock, Any], Dispatcher] = dispatcher_for,
        owns_engine: bool = False,
        check_every: float = WORKSPACE_CHECK_SECONDS,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or SystemClock()
        self.holder = process_holder()
        self.heartbeat = LeaseHeartbeat(engine, self.clock, lease_seconds=settings.lease_seconds)
        self.heartbeat.start()
        self._make_dispatcher = make_dispatcher
        self._owns_engine = owns_engine
        self._check_every = check_every
        self._workspace = workspace
        self._accepted = AcceptedTemplates(settings)
        self._templates_dir = self._review(workspace, "start")
        self._version = 0
        self._fingerprint = workspace_fingerprint(settings.workspace_dir)
        self._checked_at = time.monotonic()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all: list[Dispatcher] = []
        self._closed = False

    @classmethod
    def start(cls, settings: Settings, *, clock: Clock | None = None) -> WorkerRuntime:
        """Open the database and load the workspace as settings say (a worker's own process)."""
        from engine.store import check_reachable, engine_for

        engine = engine_for(settings)
        try:
            check_reachable(engine)
            workspace = load_valid_workspace(settings)
        except BaseException:
            engine.dispose()
            raise
        return cls(settings, engine, workspace, clock=clock, owns_engine=True)

    @property
    def workspace(self) -> Workspace:
        return self._workspace

    def dispatcher(self) -> Dispatcher:
        """This thread's dispatcher, on the newest valid workspace."""
        if self._closed:
            raise RuntimeError("the worker runtime is closed")
        self._refresh_workspace()
        mine: _ThreadDispatcher | None = getattr(self._local, "entry", None)
        if mine is None:
            with self._lock:
                dispatcher = self._make_dispatcher(self.engine, self.settings, self.clock, self._workspace)
                dispatcher.renderer.use_templates(self._templates_dir, self._workspace.schedules.labels)
                mine = _ThreadDispatcher(dispatcher, self._version)
                self._all.append(dispatcher)
            self._local.entry = mine
        elif mine.version != self._version:
            mine.dispatcher.workspace = self._workspace
            mine.dispatcher.renderer.use_templates(self._templates_dir, self._workspace.schedules.labels)
            mine.version = self._version
        return mine.dispatcher

    def _review(self, workspace: Workspace, when: str) -> Path:
        """The reviewed copy of ``workspace``'s templates to render from (a line per template held back)."""
        review = self._accepted.review(workspace)
        for line in review.lines():
            log.warning("%s: %s", when, line)
        return review.directory

    def receipt(self, task_id: str, ids: Sequence[int]) -> AbstractContextManager[str]:
        """Sign for a batch's rows while it runs (:func:`engine.fanout.receipts.batch_receipt`)."""
        return batch_receipt(self.engine, self.clock, self.heartbeat, task_id, ids, holder=self.holder)

    def _refresh_workspace(self) -> None:
        with self._lock:
            if time.monotonic() - self._checked_at < self._check_every:
                return
            self._checked_at = time.monotonic()
            fingerprint = workspace_fingerprint(self.settings.workspace_dir)
            if fingerprint == self._fingerprint:
                return
            self._fingerprint = fingerprint
            result = load_workspace(self.settings.workspace_dir, default_timezone=self.settings.timezone)
            if not result.ok:
                log.warning(
                    "workspace changed but does not validate (%d problem(s), first: %s); "
                    "still sending with the last good version",
                    len(result.errors),
                    result.errors[0],
                )
                return
            self._templates_dir = self._review(result.workspace, "workspace changed")
            self._workspace = result.workspace
            self._version += 1
            log.info("workspace changed: reloaded (%d campaigns)", len(result.workspace.campaigns))

    def close(self) -> None:
        """Finish in-flight sends of every dispatcher, close channels, release the database."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dispatchers, self._all = self._all, []
        for dispatcher in dispatchers:
            dispatcher.close()
            for channel in (dispatcher.email_channel, dispatcher.social_channel):
                if channel is not None:
                    channel.close()
        self.heartbeat.stop()
        self._accepted.close()
        if self._owns_engine:
            self.engine.dispose()


__all__ = ["WORKSPACE_CHECK_SECONDS", "WorkerRuntime", "WorkspaceInvalid", "workspace_fingerprint"]
