"""APScheduler wiring: one job per campaign trigger, kept in step with the workspace.

The pitfalls from LIBRARY-NOTES that lose runs, and what this module does about each:

* ``add_job(replace_existing=True)`` at every start recomputes ``next_run_time`` from now, so
  runs that came due while the daemon was down vanish. Jobs here are added only when
  missing, and replaced only when the campaign's definition hash changed; a job that came
  due during downtime is caught up once (``coalesce``) if within the misfire grace.
* Jobs in the persistent store are pickled: the function is referenced as
  ``"engine.scheduler:campaign_job"`` with plain string arguments.
* Two schedulers on one job store duplicate or miss runs: :mod:`engine.daemon` holds a lock
  (a file lock on SQLite, an advisory lock on PostgreSQL) before starting one.
* ``shutdown()`` marks the scheduler stopped and wakes its loop, which then runs one more pass
  over the job stores: due jobs are "submitted" to executors that are already shut down (the
  run fails) and their next run time is advanced or the job deleted, so the run is lost.
  :class:`DaemonScheduler` skips that pass.
* A job's function does not learn its scheduled time; the occurrence is named from the
  trigger itself (fixed for date triggers, "latest fire not after now" for cron), which is
  also what a coalesced catch-up must fire. Firing is idempotent, so a DST double fire or a
  shutdown race adds nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.triggers.date import DateTrigger

from engine.runtime.occurrences import FireTrigger, campaign_triggers, is_active
from engine.workspace.loader import Workspace
from engine.workspace.models import Campaign

log = logging.getLogger(__name__)

JOB_PREFIX = "campaign:"
JOB_FUNCTION = "engine.scheduler:campaign_job"


class DaemonScheduler(BackgroundScheduler):
    """A ``BackgroundScheduler`` that does not touch its job stores once it is shut down.

    APScheduler 3.11's loop wakes up after ``shutdown()`` and processes due jobs one last time
    with the executors gone: each due run fails to start, yet the job's next run time moves on
    (or a one-off job is deleted), so a run that came due during shutdown vanishes from the
    persistent store. Checking the state under the job-store lock (the lock ``shutdown`` takes
    after setting the state) closes that window: a pass that began before ``shutdown`` finishes
    with live executors, and one that would begin after it does nothing, leaving the run to be
    caught up at the next start.
    """

    _pass_started: float | None = None

    def _process_jobs(self) -> float | None:
        self._pass_started = time.monotonic()
        try:
            with self._jobstores_lock:
                if self.state == STATE_STOPPED:
                    return None
                wait: float | None = super()._process_jobs()
                return wait
        finally:
            self._pass_started = None

    @property
    def alive(self) -> bool:
        """Whether its loop's thread runs (APScheduler's thread dies with an error in a pass)."""
        thread = getattr(self, "_thread", None)
        return bool(self.running and thread is not None and thread.is_alive())

    def busy_for(self) -> float | None:
        """How long the pass over the job stores in progress has run (None between passes)."""
        started = self._pass_started
        return None if started is None else time.monotonic() - started


class CampaignFirer(Protocol):
    def fire_campaign(self, campaign_id: str, occurrence_key: str | None) -> None: ...


_firer: CampaignFirer | None = None
#: One-off jobs (campaign, occurrence key, definition hash) this process has fired. APScheduler
#: deletes a one-off job once it ran, so without this a hot reload would add it again and, while
#: its time is within the misfire grace, fire it again: harmless (firing is idempotent) but noisy.
#: A restart starts empty and may fire it once more, which is the catch-up a crash needs.
_completed: set[tuple[str, str, str]] = set()


def set_firer(firer: CampaignFirer | None) -> None:
    """Point persistent jobs at the running daemon (jobs are unpickled by name, not by object)."""
    global _firer
    _firer = firer
    _completed.clear()


def campaign_job(campaign_id: str, occurrence_key: str | None = None, definition_hash: str = "") -> None:
    """What every persistent campaign job runs."""
    if _firer is None:
        log.warning("campaign job %s ran with no daemon attached; the next start catches it up", campaign_id)
        return
    _firer.fire_campaign(campaign_id, occurrence_key)
    if occurrence_key is not None:
        _completed.add((campaign_id, occurrence_key, definition_hash))


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.rescheduled or self.removed)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in vars(self).items() if v]
        return ", ".join(parts) or "no change"


def job_id(campaign_id: str, index: int) -> str:
    return f"{JOB_PREFIX}{campaign_id}:{index}"


def _campaign_of(job: Job) -> str | None:
    if not job.id.startswith(JOB_PREFIX):
        return None
    return job.id[len(JOB_PREFIX) :].rsplit(":", 1)[0]


def _fixed_key(fire: FireTrigger) -> str | None:
    """The occurrence key of a one-off trigger; cron triggers name theirs when they run."""
    if isinstance(fire.trigger, DateTrigger):
        moment = fire.trigger.run_date
        return fire.occurrence(moment).key
    return None


def desired_jobs(
    workspace: Workspace, default_zone: ZoneInfo, now: datetime
) -> dict[str, tuple[Campaign, FireTrigger]]:
    """Job id → (campaign, trigger) for every campaign that has time triggers.

    Paused (in the database) campaigns keep their jobs and send nothing; draft campaigns and
    campaigns whose YAML says paused get none, like event-triggered ones.
    """
    wanted: dict[str, tuple[Campaign, FireTrigger]] = {}
    years = range(now.year, now.year + 2)
    for campaign in workspace.campaigns.values():
        if not is_active(campaign):
            continue
        fires = campaign_triggers(campaign, workspace.schedules, years=years, default_zone=default_zone)
        for index, fire in enumerate(fires):
            wanted[job_id(campaign.key, index)] = (campaign, fire)
    return wanted


def sync_jobs(
    scheduler: BaseScheduler,
    workspace: Workspace,
    *,
    default_zone: ZoneInfo,
    now: datetime,
    misfire_grace_seconds: float,
    jobstore: str = "default",
) -> SyncReport:
    """Make the job store match the workspace without disturbing jobs that did not change."""
    report = SyncReport()
    wanted = desired_jobs(workspace, default_zone, now)
    existing = {job.id: job for job in scheduler.get_jobs(jobstore=jobstore) if job.id.startswith(JOB_PREFIX)}
    for jid in existing:
        if jid not in wanted:
            scheduler.remove_job(jid, jobstore=jobstore)
            report.removed.append(jid)
    for jid, (campaign, fire) in wanted.items():
        digest = campaign.definition_hash()
        kwargs = {"campaign_id": campaign.key, "occurrence_key": _fixed_key(fire), "definition_hash": digest}
        job = existing.get(jid)
        # Kept only when nothing about it changed: the definition, the occurrence it names and the
        # kind of trigger (jobs stored by an older version carry APScheduler's own CronTrigger).
        if job is not None and job.kwargs == kwargs and type(job.trigger) is type(fire.trigger):
            report.kept.append(jid)
            continue
        if job is None and (campaign.key, kwargs["occurrence_key"], digest) in _completed:
            continue  # a one-off this process already fired, unchanged since
        if job is not None:
            scheduler.remove_job(jid, jobstore=jobstore)
        scheduler.add_job(
            JOB_FUNCTION,
            trigger=fire.trigger,
            id=jid,
            name=f"{campaign.key} ({campaign.trigger.kind})",
            kwargs=kwargs,
            jobstore=jobstore,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=int(misfire_grace_seconds) or None,
            replace_existing=False,
        )
        (report.rescheduled if job is not None else report.added).append(jid)
    return report
