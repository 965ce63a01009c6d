"""``estateflow run``: the long-running loop that ticks, delivers and reloads.

APScheduler 3 only drives the in-process loop (TRAPS.md): deadlines and report schedules are
rows in our own tables, claimed exactly once across daemons, so nothing is lost when a daemon
dies and nothing runs twice when four run at once. The tick job runs with
``misfire_grace_time=None, coalesce=True, max_instances=1`` in a single worker thread, so a
slow tick is never silently dropped and never overlaps itself (one writer on SQLite).

Why it does not only poll: after each tick the daemon asks for the next pending timer's due
time and, when that comes before the next poll, moves the tick job to it (from a job-executed
listener, once the finished run no longer counts against ``max_instances``). A deadline known
at the last tick therefore fires within milliseconds of its due time instead of up to one
``interval`` late (bench/README.md, lag). A timer created by another process after that tick
and due before the next poll waits for the poll (``interval``, 1 s by default).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

__all__ = ["Daemon", "file_clock"]

log = logging.getLogger("estateflow.daemon")


def file_clock(path: str | Path) -> Callable[[], datetime]:
    """Test-only virtual clock: the time is read from a file on every tick (never the default)."""
    target = Path(path)

    def now() -> datetime:
        text = target.read_text(encoding="utf-8").strip()
        value = datetime.fromisoformat(text)
        if value.tzinfo is None:
            raise ValueError(f"{target}: time {text!r} needs a UTC offset")
        return value
    return now


class Daemon:
    def __init__(self, engine: Any, *, interval: float = 1.0, clock: Callable[[], datetime] | None = None,
                 reload_files: bool = True, max_ticks: int | None = None) -> None:
        self.engine = engine
        self.interval = interval
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.reload_files = reload_files
        self.max_ticks = max_ticks
        self.ticks = 0
        self._mtimes = self._scan()
        self._scheduler: Any = None
        self._stopping = threading.Event()
        self.next_wake: datetime | None = None  # real time of the next due timer, if known

    def _scan(self) -> dict[str, float]:
        from estateflow.engine._registry import workflow_files

        mtimes: dict[str, float] = {}
        for location in self.engine._locations:
            try:
                for path in workflow_files(location):
                    mtimes[str(path)] = path.stat().st_mtime
            except (OSError, LookupError):
                continue
        return mtimes

    def maybe_reload(self) -> None:
        """Hot-reload edited workflow files; a broken edit keeps the previous revision running."""
        from estateflow import WorkflowError

        current = self._scan()
        if current == self._mtimes:
            return
        self._mtimes = current
        try:
            for warning in self.engine.reload(self.clock()):
                log.warning(warning)
            log.info("workflows reloaded: %s", ", ".join(self.engine.workflows().names))
        except WorkflowError as exc:
            for problem in exc.problems:
                log.error("%s (previous revision stays in use)", problem)

    def run_once(self) -> None:
        if self._stopping.is_set():
            return
        self.next_wake = None
        now = self.clock()
        if self.reload_files:
            self.maybe_reload()
        result = self.engine.tick(now=now)
        for timer_id, kind, number in result.fired:
            log.info("fired %s timer %d for %s", kind, timer_id, number)
        for timer_id, error in result.failed:
            log.error("timer %d failed: %s", timer_id, error)
        self.ticks += 1
        if self.max_ticks is not None and self.ticks >= self.max_ticks:
            self.stop()
            return
        try:
            self.next_wake = self._next_wake(now)
        except Exception:  # a blip here only means polling until the next tick
            log.warning("could not read the next due time; polling every %ss", self.interval, exc_info=True)

    def _next_wake(self, ticked_at: datetime) -> datetime | None:
        """When (real time) the next pending timer falls due, by this daemon's clock.

        Everything due at ``ticked_at`` was claimed by the tick, so the search starts there; a
        timer that fell due while the tick ran gives a wake-up in the past, i.e. at once.
        """
        due = self.engine.timer_runner.next_due(ticked_at)
        if due is None:
            return None
        return datetime.now(timezone.utc) + (due - self.clock())

    def _after_run(self, _event: Any) -> None:
        """Bring the tick job forward to the next due time when that comes before the next poll."""
        wake = self.next_wake
        if wake is None or self._stopping.is_set():
            return
        job = self._scheduler.get_job("tick") if self._scheduler is not None else None
        if job is not None and job.next_run_time is not None and wake < job.next_run_time:
            self._scheduler.modify_job("tick", next_run_time=max(wake, datetime.now(timezone.utc))
                                       + timedelta(milliseconds=1))

    def _job(self) -> None:
        try:
            self.run_once()
        except Exception:  # the daemon must survive a database blip; the next tick retries
            log.exception("tick failed; retrying at the next interval")

    def stop(self, *_: Any) -> None:
        self._stopping.set()
        if self._scheduler is not None and self._scheduler.running:
            threading.Thread(target=self._scheduler.shutdown, kwargs={"wait": True}, daemon=True).start()

    def run(self) -> None:
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        self._scheduler = BlockingScheduler(executors={"default": ThreadPoolExecutor(1)}, timezone="UTC")
        self._scheduler.add_job(self._job, "interval", seconds=self.interval, id="tick",
                                misfire_grace_time=None, coalesce=True, max_instances=1,
                                next_run_time=datetime.now(timezone.utc))
        self._scheduler.add_listener(self._after_run, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        log.info("estateflow daemon %s started (tick at each due time, polling every %ss)",
                 self.engine.timer_runner.worker, self.interval)
        self._scheduler.start()
        log.info("estateflow daemon stopped after %d ticks", self.ticks)
