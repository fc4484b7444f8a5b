"""Liveness: which long-running loop died or stopped progressing, told within seconds, restarted where safe.

Every loop a process runs on a thread of its own (the daemon's tick that sends, its file
watcher, its role thread, the lease keeper and heartbeat, the scheduler, the web server) is
registered with a :class:`Watchdog`, with the bound of one unit of its work:

* **dead** — its thread ended while the process still runs (an exception that escaped it, a
  ``MemoryError`` in the watcher). The watchdog's own thread notices within one period (1 s),
  logs it once with the cause, and starts the loop again when it was registered with a restart
  (at most :data:`MAX_RESTARTS` times per :data:`RESTART_WINDOW_SECONDS`; past that the loop
  stays down and says so);
* **stuck** — it has been working on one unit longer than its bound without reporting progress
  (:meth:`Watchdog.progress`: the tick reports each step and each message of a batch, the watcher
  each poll). A thread cannot be killed in Python, so a stuck loop is reported, not restarted:
  the claims it holds run out with their lease and are taken up again after a restart.

:meth:`Watchdog.problems` says which loop and why, in one line each; ``/healthz`` lists them with
status ``degraded``. Loops that end because the process is stopping are not problems.

Time here is the monotonic clock: liveness is about the real seconds a thread spends, not the
shop's calendar (the injected Clock may be frozen or simulated).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger("tidings.liveness")

#: How often the watchdog's thread looks (a dead loop is reported and restarted within this).
PERIOD_SECONDS = 1.0
#: A loop that dies more often than this within the window stays down (and says so).
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 3600.0


@dataclass(slots=True)
class _Loop:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None] | None
    bound: float | None
    busy_for: Callable[[], float | None] | None = None
    working_since: float | None = None
    last_progress: float = 0.0
    doing: str = ""
    died_of: str | None = None
    down_since: float | None = None
    restarts: deque[float] = field(default_factory=deque)
    gave_up: bool = False
    last_death: str | None = None
    thread: threading.Thread | None = None


class Watchdog:
    """Supervises named loops. Thread-safe; one per process."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._loops: dict[str, _Loop] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarted = 0

    # --- registering -------------------------------------------------------------------------

    def spawn(
        self, name: str, target: Callable[[], None], *, bound: float | None = None, restart: bool = True
    ) -> threading.Thread:
        """Run ``target`` (a loop that returns only when the process stops) on a daemon thread named
        ``tidings-<name>``, supervised: if it ends otherwise, it is dead, and started again when
        ``restart`` (the loop must then be safe to run twice in a row, never twice at once)."""

        def start() -> None:
            thread = threading.Thread(
                target=self._guarded, args=(name, target), name=f"tidings-{name}", daemon=True
            )
            with self._lock:
                self._loops[name].thread = thread
            thread.start()

        def alive() -> bool:
            thread = self.thread(name)
            return thread is not None and thread.is_alive()

        self.watch(name, alive=alive, restart=start if restart else None, bound=bound)
        start()
        found = self.thread(name)
        assert found is not None
        return found

    def thread(self, name: str) -> threading.Thread | None:
        """The current thread of a loop :meth:`spawn` started (a new one after each restart)."""
        with self._lock:
            loop = self._loops.get(name)
            return loop.thread if loop is not None else None

    def report(self) -> dict[str, dict[str, object]]:
        """Each loop's state for ``/healthz``: alive, restarts this hour, the last cause of death."""
        with self._lock:
            loops = list(self._loops.values())
        return {
            loop.name: {
                "alive": loop.alive(),
                "restarts": len(loop.restarts),
                **(
                    {"last_death": loop.died_of or loop.last_death}
                    if (loop.died_of or loop.last_death)
                    else {}
                ),
            }
            for loop in loops
        }

    def watch(
        self,
        name: str,
        *,
        alive: Callable[[], bool],
        restart: Callable[[], None] | None = None,
        bound: float | None = None,
        busy_for: Callable[[], float | None] | None = None,
    ) -> None:
        """Supervise a loop another object runs (``alive`` says whether its thread runs; ``busy_for``,
        when given, how long its current unit of work has run, for loops that cannot report progress).

        Watching a name again (a restart that builds a new thread and registers it) keeps the loop's
        history: its restarts in the last hour, whether it was given up, and its last death, so a loop
        that dies at once every time is still given up after :data:`MAX_RESTARTS`."""
        with self._lock:
            loop = _Loop(name, alive, restart, bound, busy_for=busy_for, last_progress=self._monotonic())
            before = self._loops.get(name)
            if before is not None:
                loop.restarts, loop.gave_up = before.restarts, before.gave_up
                loop.last_death, loop.died_of = before.last_death, before.died_of
            self._loops[name] = loop

    def forget(self, name: str) -> None:
        with self._lock:
            self._loops.pop(name, None)

    # --- what loops report -------------------------------------------------------------------

    @contextmanager
    def working(self, name: str, doing: str) -> Iterator[None]:
        """One unit of a loop's work: it must report progress within the loop's bound until it ends."""
        now = self._monotonic()
        with self._lock:
            loop = self._loops.get(name)
            if loop is not None:
                loop.working_since, loop.last_progress, loop.doing = now, now, doing
        try:
            yield
        finally:
            with self._lock:
                if loop is not None:
                    loop.working_since, loop.last_progress = None, self._monotonic()

    def progress(self, name: str, doing: str | None = None) -> None:
        """The loop moved on (a batch, a message, a poll): its bound starts again."""
        with self._lock:
            loop = self._loops.get(name)
            if loop is not None:
                loop.last_progress = self._monotonic()
                if doing is not None:
                    loop.doing = doing

    def reporter(self, name: str) -> Callable[[str], None]:
        """``progress`` bound to one loop, for code below the daemon (the dispatcher) to call."""
        return lambda doing: self.progress(name, doing)

    # --- what it tells ------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """One line per dead or stuck loop (empty while the process stops)."""
        if self._stopping.is_set():
            return []
        now = self._monotonic()
        found: list[str] = []
        with self._lock:
            loops = list(self._loops.values())
        for loop in loops:
            if not loop.alive():
                cause = f" ({loop.died_of})" if loop.died_of else ""
                if loop.gave_up:
                    found.append(
                        f"{loop.name} thread is down{cause}: it died {MAX_RESTARTS} times within "
                        f"{RESTART_WINDOW_SECONDS / 3600:g} h and is no longer restarted"
                    )
                elif loop.restart is None:
                    found.append(f"{loop.name} thread is down{cause}")
                else:
                    found.append(f"{loop.name} thread died{cause}; restarting")
                continue
            stuck = self._stuck_for(loop, now)
            if stuck is not None and loop.bound is not None:
                what = f" while {loop.doing}" if loop.doing else ""
                found.append(f"{loop.name}: no progress for {stuck:.0f} s{what} (bound {loop.bound:g} s)")
        if self._thread is not None and not self._thread.is_alive():
            found.append("liveness supervisor thread is down: dead loops are no longer restarted")
        return found

    def _stuck_for(self, loop: _Loop, now: float) -> float | None:
        if loop.bound is None:
            return None
        if loop.busy_for is not None:
            busy = loop.busy_for()
            return busy if busy is not None and busy > loop.bound else None
        if loop.working_since is None:
            return None
        quiet = now - loop.last_progress
        return quiet if quiet > loop.bound else None

    # --- supervising --------------------------------------------------------------------------

    def supervise(self) -> list[str]:
        """Restart what died and may be restarted; returns the names restarted."""
        if self._stopping.is_set():
            return []
        now = self._monotonic()
        restarted: list[str] = []
        with self._lock:
            loops = list(self._loops.values())
        for loop in loops:
            if loop.alive() or self._stopping.is_set():
                loop.down_since = None
                continue
            if loop.down_since is None:
                loop.down_since = now
                if loop.died_of is None:
                    log.error("%s thread stopped while the process runs", loop.name)
            if loop.restart is None or loop.gave_up:
                continue
            while loop.restarts and now - loop.restarts[0] > RESTART_WINDOW_SECONDS:
                loop.restarts.popleft()
            if len(loop.restarts) >= MAX_RESTARTS:
                loop.gave_up = True
                log.error(
                    "%s thread died %d times within %g s; no longer restarting it",
                    loop.name,
                    MAX_RESTARTS,
                    RESTART_WINDOW_SECONDS,
                )
                continue
            loop.restarts.append(now)
            # before the restart: a thread that dies again at once records its own cause
            loop.last_death, loop.died_of, loop.down_since = loop.died_of, None, None
            try:
                loop.restart()
            except Exception as exc:  # noqa: BLE001 — a failed restart is tried again next period
                log.error("could not restart the %s thread: %s: %s", loop.name, type(exc).__name__, exc)
                continue
            self.restarted += 1
            restarted.append(loop.name)
            log.warning("restarted the %s thread (%d time(s) this hour)", loop.name, len(loop.restarts))
        return restarted

    def start(self) -> None:
        """Supervise from a thread of its own, every :data:`PERIOD_SECONDS`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="tidings-liveness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The process is stopping: loops that end now are not dead, and nothing is restarted."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _run(self) -> None:
        while not self._stopping.wait(PERIOD_SECONDS):
            try:
                self.supervise()
            except Exception:  # noqa: BLE001 — the supervisor must outlive one bad look
                log.exception("liveness supervisor: unexpected error")

    def _guarded(self, name: str, target: Callable[[], None]) -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 — recorded for /healthz, then the thread ends
            with self._lock:
                loop = self._loops.get(name)
                if loop is not None:
                    loop.died_of = f"{type(exc).__name__}: {exc}"[:200]
            if not self._stopping.is_set():
                log.error("%s thread died: %s: %s", name, type(exc).__name__, exc)


__all__ = ["MAX_RESTARTS", "PERIOD_SECONDS", "RESTART_WINDOW_SECONDS", "Watchdog"]
